"""Who is calling the scheduled-events endpoint: the rules that tell an instance from everything else.

Pure: the pods and nodes come in as values (from the watch-backed index in ``imds.index``), nothing is
read here. A caller is an instance pod that is Running, named by its uid, and either

- the one pod that holds the address the request comes from (address mode), or
- the pod a ServiceAccount token is bound to (token mode; the review itself is ``imds.tokens``).

An address tells an instance apart only when it is that instance's alone, so it names nobody when
several pods hold it (a hostNetwork pod has its node's address, which every process on the node and
every other hostNetwork pod also has), when it is a node's, or when only a finished pod lists it (a
Succeeded or Failed pod keeps its IP in status after the network has given the IP back).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

RUNNING = "Running"
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class PodRecord:
    """What the endpoint keeps of a pod: who it is, its addresses, and its events if it is an instance."""

    namespace: str
    name: str
    uid: str
    phase: str
    addresses: frozenset[str]
    host_network: bool = False
    instance: bool = False
    resource_version: str = ""
    events: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


@dataclass(frozen=True)
class Instance:
    """An instance the endpoint serves: the pod it reads and writes, fenced by uid when it is known."""

    namespace: str
    name: str
    ip: str = ""
    uid: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why a request is not an instance's: the sentence goes into the service's error JSON (403)."""

    reason: str


def _as_instance(pod: PodRecord, served: Collection[str] | None) -> Instance | Refusal:
    """The rules every caller passes, however it was identified."""
    if not pod.instance:
        return Refusal(
            f"Forbidden. The caller is not an instance: pod {pod.namespace}/{pod.name} belongs to no ScaleSet"
        )
    if served is not None and pod.namespace not in served:
        return Refusal(
            f"Forbidden. Instance {pod.namespace}/{pod.name} is in a namespace this operator does not serve"
        )
    if pod.phase != RUNNING:
        return Refusal(
            f"Forbidden. Instance {pod.namespace}/{pod.name} is {pod.phase or 'Pending'}, not Running"
        )
    return Instance(pod.namespace, pod.name, uid=pod.uid)


def caller_by_address(
    address: str,
    holders: Iterable[PodRecord],
    node_addresses: Collection[str],
    served: Collection[str] | None = None,
) -> Instance | Refusal:
    """The instance whose address `address` is, from the pods that list it and the nodes' addresses.

    `served` limits callers to the operator's namespaces (None: every namespace).
    """
    listed = list(holders)
    live = [pod for pod in listed if not pod.finished]
    if address in node_addresses or any(pod.host_network for pod in live):
        return Refusal(
            f"Forbidden. The address {address} is a node's, shared by the node and its hostNetwork pods, "
            "so it names no single instance; present a ServiceAccount token instead"
        )
    if not live:
        if listed:
            return Refusal(
                f"Forbidden. The address {address} is held by no running pod: the pod that had it has finished"
            )
        return Refusal(f"Forbidden. The caller is not an instance: no pod has the address {address}")
    if len(live) > 1:
        return Refusal(
            f"Forbidden. The address {address} is held by {len(live)} pods, so it names no single instance"
        )
    found = _as_instance(live[0], served)
    return Instance(found.namespace, found.name, address, found.uid) if isinstance(found, Instance) else found


def caller_by_pod(
    pod: PodRecord | None, bound_to: str, served: Collection[str] | None = None
) -> Instance | Refusal:
    """The instance a reviewed token is bound to (`bound_to` names the pod as the token does)."""
    if pod is None:
        return Refusal(f"Forbidden. The token is bound to pod {bound_to}, which no longer exists")
    return _as_instance(pod, served)
