"""Where kubesim's kubelet simulator puts pods, and their addresses: pure functions and data, no server.

A pod goes to the least-loaded node that fits its node selector and required node affinity (ties to
the lowest index); each live pod gets a distinct loopback address from `POD_NETWORK`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

POD_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")


class PodIPPool:
    """Distinct loopback addresses for live pods, so a test can bind a socket and act as a given pod."""

    def __init__(self, network: ipaddress.IPv4Network = POD_NETWORK) -> None:
        self.network = network
        self._first = int(network.network_address)
        self._size = network.num_addresses
        self._cursor = 0
        self._owner_of: dict[int, str] = {}
        self._ip_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ip_of)

    def allocate(self, owner: str, preferred: str | None = None) -> str:
        """An address for `owner` (its previous one, or `preferred` if free); raises when the pool is empty."""
        if owner in self._ip_of:
            return str(ipaddress.IPv4Address(self._ip_of[owner]))
        wanted = self._usable(preferred) if preferred else None
        if wanted is not None and wanted not in self._owner_of:
            return self._take(owner, wanted)
        # Hand out addresses in a cycle, so a released address is not reused at once (like real IPAM).
        for step in range(self._size):
            offset = (self._cursor + step) % self._size
            candidate = self._first + offset
            # Skip the network's own first and last address, and .0 and .255 in the last octet:
            # they read as network and broadcast addresses.
            edge = offset in (0, self._size - 1)
            if edge or candidate & 0xFF in (0, 255) or candidate in self._owner_of:
                continue
            self._cursor = (offset + 1) % self._size
            return self._take(owner, candidate)
        raise RuntimeError(f"the pod network {self.network} has no free address left")

    def release(self, owner: str) -> None:
        address = self._ip_of.pop(owner, None)
        if address is not None:
            del self._owner_of[address]

    def ip_of(self, owner: str) -> str | None:
        address = self._ip_of.get(owner)
        return None if address is None else str(ipaddress.IPv4Address(address))

    def _take(self, owner: str, address: int) -> str:
        self._owner_of[address] = owner
        self._ip_of[owner] = address
        return str(ipaddress.IPv4Address(address))

    def _usable(self, ip: str) -> int | None:
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        edges = (self.network.network_address, self.network.broadcast_address)
        if address not in self.network or address in edges or address.packed[-1] in (0, 255):
            return None
        return int(address)


def host_ip(index: int) -> str:
    """The address of simulated node `index` (127.0.1.1 for node 0)."""
    return str(ipaddress.IPv4Address("127.0.1.1") + index)


@dataclass(frozen=True)
class NodeView:
    """What the scheduler needs to know of a node."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    ready: bool = True


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "In")
    values = [str(v) for v in expression.get("values") or []]
    value = labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def node_fits(pod: Mapping[str, Any], node: NodeView) -> bool:
    """Whether the pod's nodeSelector and required node affinity admit the node."""
    spec = pod.get("spec") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        # Terms are ORed, the expressions inside a term ANDed, as in the scheduler.
        return any(
            all(_expression_matches(e, node.labels) for e in term.get("matchExpressions") or [])
            for term in terms
        )
    return True


def choose_node(
    pod: Mapping[str, Any], nodes: Sequence[NodeView], load: Mapping[str, int]
) -> tuple[str | None, str]:
    """The least-loaded node the pod fits on (ties go to the earliest node), or None and why not."""
    schedulable = [n for n in nodes if n.ready and not n.unschedulable]
    fitting = [n for n in schedulable if node_fits(pod, n)]
    if fitting:
        best = min(fitting, key=lambda n: (load.get(n.name, 0), nodes.index(n)))
        return best.name, ""
    reasons = []
    if len(schedulable) < len(nodes):
        reasons.append(f"{len(nodes) - len(schedulable)} node(s) were unschedulable")
    if schedulable:
        reasons.append(f"{len(schedulable)} node(s) didn't match Pod's node affinity/selector")
    return None, f"0/{len(nodes)} nodes are available: {', '.join(reasons) or 'no nodes'}."
