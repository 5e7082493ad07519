"""Node (Host) maintenance: which instances must leave nodes under maintenance, one batch at a time, UD by UD."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

MAINTENANCE_LABEL = "fleet.scaleset.dev/maintenance"
MAINTENANCE_PENDING = "pending"
MAINTENANCE_READY = "ready"


@dataclass(frozen=True)
class NodeState:
    """What the plan needs of a node: cordoned (spec.unschedulable) and its maintenance label."""

    name: str
    cordoned: bool = False
    maintenance: str | None = None

    @property
    def under_maintenance(self) -> bool:
        return self.cordoned or self.maintenance == MAINTENANCE_PENDING


@dataclass(frozen=True)
class PlacedInstance:
    """An instance and the node it runs on (None while it is not scheduled)."""

    name: str
    ordinal: int
    upgrade_domain: int
    node: str | None


@dataclass(frozen=True)
class HostPlan:
    """What the controller does next about node maintenance.

    `redeploy`: instances to move off now (one batch, all of one upgrade domain, by ordinal); empty
    while a move is still in flight. `waiting`: the instances still on nodes under maintenance, in the
    order they will go. `nodes_ready`: labelled `pending` nodes that no instance is left on, whose
    label may be set to `ready`.
    """

    redeploy: tuple[str, ...]
    waiting: tuple[str, ...]
    nodes_ready: tuple[str, ...]


def plan_host_maintenance(
    nodes: Iterable[NodeState],
    instances: Iterable[PlacedInstance],
    batch_size: int,
    moving: Collection[str] = (),
) -> HostPlan:
    """The next Host batch. `instances`: every instance the operator manages on these nodes (all ScaleSets,
    so that a node is reported ready only when it is empty of them); `moving`: instances whose redeploy
    has started and not yet finished; `batch_size`: the policy's batch size (see planning.batches).

    The caller asks planning.maintenance.gate_batch(..., MaintenanceScope.HOST, ...) before acting on
    `redeploy`.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    nodes = list(nodes)
    affected = {node.name for node in nodes if node.under_maintenance}
    on_affected = sorted(
        (instance for instance in instances if instance.node in affected),
        key=lambda instance: (instance.upgrade_domain, instance.ordinal, instance.name),
    )
    occupied = {instance.node for instance in on_affected}
    nodes_ready = tuple(
        sorted(
            node.name
            for node in nodes
            if node.maintenance == MAINTENANCE_PENDING and node.name not in occupied
        )
    )
    waiting = tuple(instance.name for instance in on_affected)
    # A move still in flight holds the next batch, whether or not its pod has left the node yet.
    if not on_affected or moving:
        return HostPlan((), waiting, nodes_ready)
    domain = on_affected[0].upgrade_domain
    batch = [instance.name for instance in on_affected if instance.upgrade_domain == domain][:batch_size]
    return HostPlan(tuple(batch), waiting, nodes_ready)
