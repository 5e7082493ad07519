"""The batch planner: from a snapshot of a ScaleSet's instances, the one next step of its rollout.

The controller calls `next_step` on every reconcile and acts on the answer alone. Everything the
planner needs is in its arguments (spec, policy, instances, the batch recorded in status, the clock),
so the answer is the same however often it is asked, and an operator killed between any two writes
picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from scaleset_operator.api.models import OnInstanceStartTimeout, UpgradeMode, UpgradePolicySpec
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import Batch, HealthGate, InstanceState, RolloutState


class StepReason(StrEnum):
    """Why the planner answered as it did, in the CamelCase of a Kubernetes condition reason."""

    BATCH_STARTED = "BatchStarted"
    BATCH_RESUMED = "BatchResumed"
    BATCH_RETARGETED = "BatchRetargeted"
    BATCH_IN_PROGRESS = "BatchInProgress"
    INSTANCES_STARTING = "InstancesStarting"
    PAUSE_BETWEEN_BATCHES = "PauseBetweenBatches"
    WAITING_FOR_WALK = "WaitingForWalk"
    PAUSED = "Paused"
    TOO_MANY_UNHEALTHY = "TooManyUnhealthy"
    TOO_MANY_UNHEALTHY_UPGRADED = "TooManyUnhealthyUpgraded"
    INSTANCE_START_TIMEOUT = "InstanceStartTimeout"
    ROLLBACK_REQUIRED = "RollbackRequired"
    ROLLBACK_STARTED = "RollbackStarted"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    WAITING_FOR_MAINTENANCE_WINDOW = "WaitingForMaintenanceWindow"
    WAITING_FOR_OFF_PEAK_HOURS = "WaitingForOffPeakHours"
    ROLLOUT_COMPLETE = "RolloutComplete"
    # A PodDisruptionBudget refused to let an instance go (control/instance_control.remove_instance).
    EVICTION_BLOCKED = "EvictionBlocked"
    # Staged mode (planning/staged.py)
    STAGING = "StagingInstances"
    WAITING_FOR_STAGED_SET = "WaitingForStagedSet"
    STAGED_CAPACITY = "StagedCapacity"
    STAGED_SET_UNHEALTHY = "StagedSetUnhealthy"
    READY_TO_SWAP = "ReadyToSwap"
    SWAPPING = "Swapping"
    SWAPPED_BACK = "SwappedBack"


@dataclass(frozen=True)
class StartBatch:
    """Record `batch` in status.upgrade, then move each of its instances not yet there to the update revision.

    The reason says which batch this is: the next one of the rollout (BatchStarted), or the members of the
    recorded batch that are down on an older revision (BatchResumed when the batch was recorded for the
    update revision but they were never updated, BatchRetargeted when the template changed under the
    batch). `surge`: create the replacement instance before removing the old one (policy maxSurge).
    `downtime`: the batch holds every instance and no surge instance carries the load, so the ScaleSet
    is down while it runs (a single-instance ScaleSet). `shrunk_because`: why the batch holds fewer
    instances than maxBatchInstancePercent allows (instances already unhealthy leave less room under
    maxUnhealthyInstancePercent); empty when it was not shrunk.
    """

    batch: Batch
    reason: StepReason = StepReason.BATCH_STARTED
    message: str = ""
    surge: bool = False
    downtime: bool = False
    shrunk_because: str = ""


@dataclass(frozen=True)
class Wait:
    """Nothing to do yet; plan again when something changes, or at `until` when that is set."""

    reason: StepReason
    message: str
    until: datetime | None = None


@dataclass(frozen=True)
class Stop:
    """A breach of the policy that the user must see (Stalled). Level-triggered: it lifts when health does.

    `ordinals` names the instances at fault, for the message and for a rollback of them.
    """

    reason: StepReason
    message: str
    ordinals: tuple[int, ...] = ()


@dataclass(frozen=True)
class Complete:
    """Every instance is on the update revision and healthy, or has had its chance to become so."""

    reason: StepReason = StepReason.ROLLOUT_COMPLETE
    message: str = "every instance is on the update revision"


Step = StartBatch | Wait | Stop | Complete


def batch_size(replicas: int, policy: UpgradePolicySpec) -> int:
    """The most instances one batch may hold: max(1, floor(replicas * maxBatchInstancePercent / 100)).

    This is a maximum: instances already unhealthy shrink a batch further (`unhealthy_budget`). In
    Rolling and Manual modes a fleet of two or more keeps at least one instance serving, so the size
    is capped at replicas - 1: otherwise 100 % of a single-domain fleet would take every instance down
    at once, which is what Automatic mode is for. A batch is further limited to one upgrade domain.
    """
    if policy.mode == UpgradeMode.AUTOMATIC:
        return max(1, replicas)
    size = max(1, replicas * policy.rolling_upgrade.max_batch_instance_percent // 100)
    if replicas >= 2:
        size = min(size, replicas - 1)
    return size


def unhealthy_budget(replicas: int, policy: UpgradePolicySpec) -> int:
    """How many instances may be unhealthy at once: max(1, floor(replicas * maxUnhealthyInstancePercent / 100)).

    The VM scale set API: the share of all instances "that can be simultaneously unhealthy, either as
    a result of being upgraded, or by being found in an unhealthy state", checked before each batch.
    Rounded down as the batch size is, and at least one, since a batch is never smaller than one
    instance: with no instance unhealthy, a fleet too small for the percent still takes one at a time.
    """
    if replicas <= 0:
        return 0
    return max(1, replicas * policy.rolling_upgrade.max_unhealthy_instance_percent // 100)


def _exceeds(count: int, total: int, percent: int) -> bool:
    # count / total * 100 > percent, in integers so 1 of 5 at 20 % is exactly at the limit.
    return count * 100 > percent * total


@dataclass(frozen=True)
class _Snapshot:
    """The arguments of one `next_step` call, with what every rule asks of them worked out once."""

    replicas: int
    upgrade_domain_count: int
    policy: UpgradePolicySpec
    update_revision: str
    fleet: Mapping[int, InstanceState]
    healthy: frozenset[int]
    gate: HealthGate
    now: datetime

    def domain(self, ordinal: int) -> int:
        return upgrade_domain_of(ordinal, self.upgrade_domain_count)

    def names(self, ordinals: Iterable[int]) -> str:
        return ", ".join(self.fleet[ordinal].name for ordinal in sorted(ordinals))

    def on_update_revision(self, ordinal: int) -> bool:
        instance = self.fleet[ordinal]
        return instance.running and instance.revision == self.update_revision

    def outdated(self) -> list[int]:
        """Instances still to update. Missing and terminating ones are left out: the controller creates
        them again at the update revision, so a batch has nothing to do for them."""
        return [o for o, i in self.fleet.items() if i.running and i.revision != self.update_revision]

    def surge(self) -> bool:
        return self.policy.rolling_upgrade.max_surge

    def start(self, batch: Batch, reason: StepReason, message: str, shrunk_because: str = "") -> StartBatch:
        downtime = len(batch.ordinals) >= self.replicas and not self.surge()
        return StartBatch(batch, reason, message, self.surge(), downtime, shrunk_because)

    def next_event(self, ordinals: Iterable[int], batch_started_at: datetime | None) -> datetime | None:
        """The earliest moment one of these unhealthy instances turns healthy or runs out of time."""
        moments: list[datetime] = []
        for ordinal in ordinals:
            instance = self.fleet[ordinal]
            healthy_at = self.gate.healthy_at(instance)
            if healthy_at is not None and healthy_at > self.now:
                moments.append(healthy_at)
            deadline = self.gate.start_deadline(instance, self.update_revision, batch_started_at)
            if deadline is not None and deadline > self.now:
                moments.append(deadline)
        return min(moments, default=None)

    def timed_out(self, ordinal: int, batch_started_at: datetime | None = None) -> bool:
        return self.gate.timed_out(self.fleet[ordinal], self.update_revision, self.now, batch_started_at)


def _snapshot(
    replicas: int,
    upgrade_domain_count: int,
    policy: UpgradePolicySpec,
    update_revision: str,
    instances: Sequence[InstanceState],
    now: datetime,
) -> _Snapshot:
    # Instances beyond `replicas` are being scaled away and take no part in the rollout; ordinals the
    # caller did not list count as missing, so they weigh on the unhealthy limits as missing pods do.
    listed = {instance.ordinal: instance for instance in instances if 0 <= instance.ordinal < replicas}
    fleet = {
        ordinal: listed.get(ordinal) or InstanceState.missing(f"instance {ordinal}", ordinal)
        for ordinal in range(replicas)
    }
    gate = HealthGate.of(policy.health_check)
    healthy = frozenset(o for o, instance in fleet.items() if gate.is_healthy(instance, now))
    return _Snapshot(replicas, upgrade_domain_count, policy, update_revision, fleet, healthy, gate, now)


def next_step(
    *,
    replicas: int,
    upgrade_domain_count: int,
    walk_upgrade_domain: int | None,
    paused: bool,
    policy: UpgradePolicySpec,
    update_revision: str,
    instances: Sequence[InstanceState],
    rollout: RolloutState,
    now: datetime,
    descending_domains: bool = False,
) -> Step:
    """The one next step of the rollout to `update_revision`, decided from this snapshot alone.

    In order: the recorded batch must be finished (its instances healthy, or timed out under Proceed);
    the upgraded instances must be healthy enough (maxUnhealthyUpgradedInstancePercent, checked after
    each batch, as a share of the instances on the update revision); then, unless there is nothing
    left, spec.paused, Manual mode's walkUpgradeDomain and the pause between batches may hold the next
    batch back; the next batch takes at most maxBatchInstancePercent, shrunk so that the instances it
    takes down plus those unhealthy already stay within maxUnhealthyInstancePercent (no room for one:
    the rollout stops); and it starts. So at most one batch is ever in flight, and the rollout never
    takes an instance down while the unhealthy ones fill the budget.
    `descending_domains` walks the upgrade domains from the highest down (a rollback's order).
    """
    snapshot = _snapshot(replicas, upgrade_domain_count, policy, update_revision, instances, now)
    if replicas == 0:
        return Complete(message="the ScaleSet has no instances")
    if rollout.batch is not None:
        in_flight = _finish_recorded_batch(snapshot, rollout, paused)
        if in_flight is not None:
            return in_flight

    upgraded_check = _check_upgraded_health(snapshot)
    if upgraded_check is not None:
        return upgraded_check

    outdated = snapshot.outdated()
    if not outdated:
        return _settle(snapshot)
    if paused:
        return Wait(StepReason.PAUSED, f"spec.paused holds back {len(outdated)} instance(s) still to update")

    if policy.mode == UpgradeMode.AUTOMATIC:
        # All at once and in no order, as the VM scale set Automatic mode: the health limits are the
        # Rolling mode's and do not gate it.
        batch = Batch(None, tuple(sorted(outdated)))
        return snapshot.start(
            batch,
            StepReason.BATCH_STARTED,
            f"updating every outdated instance at once to {update_revision}: {snapshot.names(outdated)}",
        )

    allowed = _walkable(snapshot, outdated, walk_upgrade_domain)
    if not allowed:
        return _waiting_for_walk(snapshot, outdated, walk_upgrade_domain)
    pause = _pause_between_batches(snapshot, rollout)
    if pause is not None:
        return pause

    return _start_next_batch(snapshot, allowed, descending_domains)


def _start_next_batch(snapshot: _Snapshot, allowed: Sequence[int], descending: bool) -> StartBatch | Stop:
    """maxUnhealthyInstancePercent, checked before the batch: the instances it takes down plus those
    unhealthy already stay within the budget, so the batch shrinks (never below one instance), and
    when the instances unhealthy already leave no room for one, the rollout stops.

    An instance that is unhealthy already takes nothing more down when it is updated, so it does not use
    the budget a second time; with prioritizeUnhealthyInstances such instances go first.
    """
    policy, replicas = snapshot.policy, snapshot.replicas
    unhealthy = tuple(o for o in snapshot.fleet if o not in snapshot.healthy)
    budget = unhealthy_budget(replicas, policy)
    limit = policy.rolling_upgrade.max_unhealthy_instance_percent
    candidates, chosen = _next_batch(snapshot, allowed, budget - len(unhealthy), descending)
    why = (
        f"{len(unhealthy)} of {replicas} instances {'is' if len(unhealthy) == 1 else 'are'} unhealthy "
        f"({snapshot.names(unhealthy)}) and maxUnhealthyInstancePercent ({limit} %) lets at most "
        f"{budget} be unhealthy at once"
    )
    if not chosen:
        return Stop(
            StepReason.TOO_MANY_UNHEALTHY,
            f"{why}, which leaves no room to take {snapshot.names(candidates[:1])} down",
            unhealthy,
        )
    batch = Batch(snapshot.domain(chosen[0]), tuple(sorted(chosen)))
    shrunk = f"{len(chosen)} of {len(candidates)}, as {why}" if len(chosen) < len(candidates) else ""
    return snapshot.start(
        batch,
        StepReason.BATCH_STARTED,
        f"updating {snapshot.names(batch.ordinals)} (upgrade domain {batch.upgrade_domain}) "
        f"to {snapshot.update_revision}" + (f"; the batch holds {shrunk}" if shrunk else ""),
        shrunk,
    )


def _finish_recorded_batch(snapshot: _Snapshot, rollout: RolloutState, paused: bool) -> Step | None:
    """What the recorded batch still needs, or None when it is finished and the rollout may go on."""
    assert rollout.batch is not None
    recorded = rollout.batch
    members = tuple(o for o in recorded.ordinals if o < snapshot.replicas)
    same_target = rollout.revision == snapshot.update_revision
    unapplied = [
        o
        for o in members
        if snapshot.fleet[o].running and snapshot.fleet[o].revision != snapshot.update_revision
    ]
    # Members still on an older revision: the template changed while the batch ran (re-targeted), or
    # the operator stopped between recording the batch and updating them. The healthy ones are simply
    # outdated again and wait for a later batch in the usual order. Those that are down take the update
    # revision at once: they are down already, so this takes nothing more down, and it is how a newer
    # template overrides a batch stuck on a bad one.
    stranded = tuple(o for o in unapplied if o not in snapshot.healthy)
    if stranded and paused:
        return Wait(
            StepReason.PAUSED,
            f"spec.paused holds back {snapshot.names(stranded)}, down on an older revision",
        )
    if stranded:
        # The new record keeps every member still down, those already on the update revision too, so
        # no further batch starts before they are healthy.
        down_members = tuple(o for o in members if o not in snapshot.healthy)
        return snapshot.start(
            Batch(recorded.upgrade_domain, down_members),
            StepReason.BATCH_RESUMED if same_target else StepReason.BATCH_RETARGETED,
            f"moving {snapshot.names(stranded)} of the running batch on to {snapshot.update_revision}",
        )

    pending = [o for o in members if o not in snapshot.healthy and o not in unapplied]
    started_at = rollout.batch_started_at
    timed_out = tuple(o for o in pending if snapshot.timed_out(o, started_at))
    on_timeout = snapshot.policy.health_check.on_instance_start_timeout
    if timed_out and on_timeout == OnInstanceStartTimeout.PAUSE:
        return Stop(
            StepReason.INSTANCE_START_TIMEOUT,
            f"{snapshot.names(timed_out)} did not become healthy within instanceStartTimeout "
            f"({snapshot.policy.health_check.instance_start_timeout}); the rollout is paused",
            timed_out,
        )
    if timed_out and on_timeout == OnInstanceStartTimeout.ROLLBACK:
        return Stop(
            StepReason.ROLLBACK_REQUIRED,
            f"{snapshot.names(timed_out)} did not become healthy within instanceStartTimeout "
            f"({snapshot.policy.health_check.instance_start_timeout}); the batch must be rolled back",
            timed_out,
        )
    # Under Proceed an instance that timed out no longer holds the batch; it counts as unhealthy.
    starting = [o for o in pending if o not in timed_out]
    if starting:
        return Wait(
            StepReason.BATCH_IN_PROGRESS,
            f"waiting for {snapshot.names(starting)} to become healthy",
            snapshot.next_event(starting, started_at),
        )
    return None


def _check_upgraded_health(snapshot: _Snapshot) -> Step | None:
    """maxUnhealthyUpgradedInstancePercent: "the maximum percentage of upgraded virtual machine instances
    that can be found to be in an unhealthy state", as a share of the instances on the update revision.

    An upgraded instance still inside its start timeout has not been found unhealthy yet: while the
    limit is breached only with it, the planner waits for it rather than declaring the breach.
    """
    upgraded = [o for o in snapshot.fleet if snapshot.on_update_revision(o)]
    unhealthy = [o for o in upgraded if o not in snapshot.healthy]
    limit = snapshot.policy.rolling_upgrade.max_unhealthy_upgraded_instance_percent
    if not _exceeds(len(unhealthy), len(upgraded), limit):
        return None
    failed = [o for o in unhealthy if snapshot.timed_out(o)]
    starting = [o for o in unhealthy if o not in failed]
    if not _exceeds(len(failed), len(upgraded), limit):
        return Wait(
            StepReason.INSTANCES_STARTING,
            f"waiting for updated instances {snapshot.names(starting)} to become healthy",
            snapshot.next_event(starting, None),
        )
    return Stop(
        StepReason.TOO_MANY_UNHEALTHY_UPGRADED,
        f"{len(unhealthy)} of the {len(upgraded)} instances on {snapshot.update_revision} are unhealthy, "
        f"more than maxUnhealthyUpgradedInstancePercent ({limit} %) allows: {snapshot.names(unhealthy)}",
        tuple(unhealthy),
    )


def _settle(snapshot: _Snapshot) -> Step:
    """Every instance is on the update revision (or being created at it): complete once each is healthy
    or has had its instanceStartTimeout; one failing past its timeout is a health matter, not a rollout's."""
    waiting = [o for o in snapshot.fleet if o not in snapshot.healthy and not snapshot.timed_out(o)]
    if waiting:
        return Wait(
            StepReason.INSTANCES_STARTING,
            f"every instance is on {snapshot.update_revision}; waiting for {snapshot.names(waiting)} "
            "to become healthy",
            snapshot.next_event(waiting, None),
        )
    return Complete(message=f"every instance is on {snapshot.update_revision}")


def _pause_between_batches(snapshot: _Snapshot, rollout: RolloutState) -> Wait | None:
    """pauseTimeBetweenBatches, counted from when the recorded batch of this rollout became healthy."""
    pause = timedelta(seconds=snapshot.policy.rolling_upgrade.pause_seconds)
    if not pause or rollout.batch is None or rollout.revision != snapshot.update_revision:
        return None
    finished_at = _batch_finished_at(snapshot, rollout)
    if finished_at is None or snapshot.now >= finished_at + pause:
        return None
    until = finished_at + pause
    return Wait(
        StepReason.PAUSE_BETWEEN_BATCHES,
        f"pauseTimeBetweenBatches ({snapshot.policy.rolling_upgrade.pause_time_between_batches}) "
        f"after the last batch; the next starts at {until.isoformat()}",
        until,
    )


def _batch_finished_at(snapshot: _Snapshot, rollout: RolloutState) -> datetime | None:
    """When the last instance of a finished batch became healthy (or timed out); None when unknown."""
    assert rollout.batch is not None
    moments: list[datetime] = []
    for ordinal in rollout.batch.ordinals:
        if ordinal >= snapshot.replicas:
            continue
        instance = snapshot.fleet[ordinal]
        moment = (
            snapshot.gate.healthy_at(instance)
            if ordinal in snapshot.healthy
            else snapshot.gate.start_deadline(instance, snapshot.update_revision, rollout.batch_started_at)
        )
        if moment is not None:
            moments.append(moment)
    if rollout.batch_finished_at is not None:
        moments.append(rollout.batch_finished_at)
    return max(moments, default=None)


def _walkable(snapshot: _Snapshot, outdated: Sequence[int], walk_upgrade_domain: int | None) -> list[int]:
    if snapshot.policy.mode != UpgradeMode.MANUAL:
        return list(outdated)
    if walk_upgrade_domain is None:
        return []
    return [o for o in outdated if snapshot.domain(o) <= walk_upgrade_domain]


def _waiting_for_walk(snapshot: _Snapshot, outdated: Sequence[int], walk_upgrade_domain: int | None) -> Wait:
    next_domain = min(snapshot.domain(o) for o in outdated)
    if walk_upgrade_domain is None:
        allowed = "no upgrade domain may be updated yet"
    else:
        allowed = f"upgrade domains 0..{walk_upgrade_domain} are up to date"
    return Wait(
        StepReason.WAITING_FOR_WALK,
        f"Manual mode: {allowed}; upgrade domain {next_domain} waits for "
        f"spec.walkUpgradeDomain to reach {next_domain}",
    )


def _next_batch(
    snapshot: _Snapshot, allowed: Sequence[int], room: int, descending: bool = False
) -> tuple[list[int], list[int]]:
    """The next batch as maxBatchInstancePercent would have it, and what of it fits in `room`.

    Upgrade domains in ascending order (descending when asked), lowest ordinals first, never two domains
    in one batch. With prioritizeUnhealthyInstances the instances unhealthy now go first (still domain by
    domain), and a batch holds only unhealthy or only healthy ones, so a healthy instance never rides
    along. The batch that fits is the longest start of that order taking at most `room` healthy
    instances down; the unhealthy ones in it cost nothing.
    """
    prioritize = snapshot.policy.rolling_upgrade.prioritize_unhealthy_instances

    def order(ordinal: int) -> tuple[bool, int, int]:
        domain = snapshot.domain(ordinal)
        return (prioritize and ordinal in snapshot.healthy, -domain if descending else domain, ordinal)

    ordered = sorted(allowed, key=order)
    group = order(ordered[0])[:2]
    candidates = [o for o in ordered if order(o)[:2] == group][
        : batch_size(snapshot.replicas, snapshot.policy)
    ]
    chosen: list[int] = []
    for ordinal in candidates:
        if ordinal in snapshot.healthy:
            if room <= 0:
                break
            room -= 1
        chosen.append(ordinal)
    return candidates, chosen
