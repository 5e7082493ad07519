"""Node (Host) maintenance: which instances must leave nodes under maintenance, one batch at a time, UD by UD;
and which instances are told of a node's freeze, work on the node that moves no instance.

A freeze is Host work like a move: maintenance control exists for workloads that cannot take even a
few seconds of freeze at an arbitrary time, so when a MaintenanceConfiguration of scope Host applies
to the ScaleSet, a freeze not yet told to any of its instances waits for a Host window, up to the
configuration's maxDeferral (`gate_freezes`). One already told goes on, as a running batch does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from scaleset_operator.planning.maintenance import Closed, GateDecision, may_start

MAINTENANCE_LABEL = "fleet.scaleset.dev/maintenance"
MAINTENANCE_PENDING = "pending"
MAINTENANCE_READY = "ready"
# Work on the node that needs no move (a firmware or kernel live patch, a short pause): the instances
# on it are told (a Freeze scheduled event) and the node tool waits for `ready` as after `pending`.
MAINTENANCE_FREEZE = "freeze"


@dataclass(frozen=True)
class NodeState:
    """What the plan needs of a node: cordoned (spec.unschedulable) and its maintenance label."""

    name: str
    cordoned: bool = False
    maintenance: str | None = None

    @property
    def under_maintenance(self) -> bool:
        return self.cordoned or self.maintenance == MAINTENANCE_PENDING

    @property
    def freezing(self) -> bool:
        """The node tool asked for a freeze and the operator has not answered `ready` yet."""
        return self.maintenance == MAINTENANCE_FREEZE and not self.cordoned


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


# --------------------------------------------------------------------------- freeze


@dataclass(frozen=True)
class FreezingInstance:
    """An instance, its node, and the node whose freeze it has agreed to (approved, or its notice ran out)."""

    name: str
    node: str | None
    frozen_on: str | None = None


@dataclass(frozen=True)
class FreezePlan:
    """What the controller does next about node freezes, for the instances of one ScaleSet.

    `announce`: per freezing node, the instances on it not yet frozen for it (each gets a Freeze
    scheduled event; once every one of them is approved or due they count as frozen).
    `finished`: per node, the instances frozen for it whose freeze is over (the node tool took the
    label away, or the instance is no longer on the node): their events and marks go.
    """

    announce: Mapping[str, tuple[str, ...]]
    finished: Mapping[str, tuple[str, ...]]


def plan_freeze(nodes: Iterable[NodeState], instances: Iterable[FreezingInstance]) -> FreezePlan:
    """Which instances to tell of a freeze and whose freeze is over.

    A node labelled `freeze` is freezing until the operator labels it `ready`; while it is `ready`,
    the instances frozen for it stay frozen (the node tool is at work); any other label, none, or a
    cordon ends the freeze (a cordoned node's instances are moved instead, see plan_host_maintenance).
    """
    by_name = {node.name: node for node in nodes}

    def held(name: str) -> bool:
        node = by_name.get(name)
        return (
            node is not None
            and not node.cordoned
            and node.maintenance in (MAINTENANCE_FREEZE, MAINTENANCE_READY)
        )

    announce: dict[str, list[str]] = {}
    finished: dict[str, list[str]] = {}
    for instance in sorted(instances, key=lambda item: item.name):
        if instance.frozen_on is not None and (
            instance.frozen_on != instance.node or not held(instance.frozen_on)
        ):
            finished.setdefault(instance.frozen_on, []).append(instance.name)
            continue
        node = by_name.get(instance.node or "")
        if node is not None and node.freezing and instance.frozen_on != node.name:
            announce.setdefault(node.name, []).append(instance.name)
    return FreezePlan(
        {node: tuple(names) for node, names in sorted(announce.items())},
        {node: tuple(names) for node, names in sorted(finished.items())},
    )


def freeze_may_proceed(node: str, frozen_on: Iterable[str | None]) -> bool:
    """Whether a freezing node may be labelled `ready`: every instance on it (of every ScaleSet) is frozen
    for it. `frozen_on`: the mark of each instance pod on the node. An empty node may proceed."""
    return all(mark == node for mark in frozen_on)


@dataclass(frozen=True)
class FreezeGate:
    """The freezes that may be told now, and those that wait for a Host window.

    `announce`: the part of FreezePlan.announce that goes now. `held`: nodes whose freeze waits, with
    `reason`, `message` and `until` (the next window's start) from the gate; `pending_since` is when
    the first of them started to wait, what maxDeferral counts from.
    """

    announce: Mapping[str, tuple[str, ...]]
    held: tuple[str, ...] = ()
    pending_since: datetime | None = None
    reason: str | None = None
    message: str | None = None
    until: datetime | None = None


def gate_freezes(
    plan: FreezePlan,
    started: Collection[str],
    decision: GateDecision,
    pending_since: datetime | None,
    now: datetime,
) -> FreezeGate:
    """Which freezes of `plan` are told now under the Host gate `decision` (planning.maintenance.gate_batch
    of scope Host, asked with `pending_since`).

    `started`: nodes whose freeze some instance of the ScaleSet has been told of, or has agreed to
    already: they go on whatever the gate says. The others go when the gate lets Host work start (no
    Host configuration applies, a window is open, or maxDeferral has passed) and wait otherwise.
    """
    waiting = tuple(sorted(node for node in plan.announce if node not in started))
    if may_start(decision) or not waiting:
        return FreezeGate(dict(plan.announce))
    going = {node: names for node, names in plan.announce.items() if node in started}
    assert isinstance(decision, Closed)
    return FreezeGate(
        going,
        held=waiting,
        pending_since=pending_since or now,
        reason=decision.reason,
        message=f"The freeze of node{'s' if len(waiting) > 1 else ''} {', '.join(waiting)} waits: {decision.message}",
        until=decision.next_start,
    )
