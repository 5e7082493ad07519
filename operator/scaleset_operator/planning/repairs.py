"""Instances that fail are repaired: which one next, when, and when a repair is over.

Two rules, each from its source:

- A finished pod (phase Failed: evicted, its node shut down, OOM-killed under restartPolicy Never; or
  Succeeded) never runs again, so it is replaced at once, as StatefulSet does ("we should restart the
  pod regardless of the exit code"). `is_finished` says which.
- Automatic repairs, as the scale set API's automaticRepairsPolicy: an instance not Ready for longer
  than the grace period ("the grace period starts after the state change has completed", so it counts
  from the later of its Ready condition's last transition and its creation or update) is repaired, one
  at a time, never during an upgrade's batch, and only while the instances down, the repaired one
  included, are within maxUnhealthyInstancePercent (a not-Ready pod "may be evicted only if the guarded
  application is not disrupted", as a PodDisruptionBudget's IfHealthyBudget says).

`plan_repair` decides from a snapshot (the instances, the repair recorded in status, the clock) and
returns what the controller does; a restarted operator reads the same record and carries on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from scaleset_operator.api.durations import format_duration
from scaleset_operator.api.models import RepairAction

FINISHED_PHASES = frozenset({"Failed", "Succeeded"})


def is_finished(phase: str | None) -> bool:
    """A pod in this phase never runs again: Failed or Succeeded (the phase of an evicted or forcibly
    stopped pod follows its containers' exit codes, so both mean the instance is down for good)."""
    return phase in FINISHED_PHASES


def unavailability_budget(replicas: int, max_unhealthy_instance_percent: int) -> int:
    """How many instances may be down at once: maxUnhealthyInstancePercent of all of them, rounded down,
    and never less than one (any single repair or batch takes at least one instance)."""
    return max(1, replicas * max_unhealthy_instance_percent // 100)


class RepairReason(StrEnum):
    """Why repairs do what they do, as CamelCase condition reasons."""

    REPAIR_STARTED = "RepairStarted"
    REPAIR_IN_PROGRESS = "RepairInProgress"
    HELD_FOR_UPGRADE = "RepairsHeldForUpgrade"
    HELD_BY_BUDGET = "RepairsHeldByBudget"


class RepairResult(StrEnum):
    """How a repair ended (a line of status.repairs.history)."""

    REPAIRED = "Repaired"  # the new pod is Ready
    STILL_UNHEALTHY = "StillUnhealthy"  # the new pod was not Ready within its own grace period
    RECOVERED = "Recovered"  # Ready again before its pod was removed
    CANCELLED = "Cancelled"  # repairs were turned off, or an upgrade's batch took the instance, first
    GONE = "Gone"  # scaled away


@dataclass(frozen=True)
class RepairPolicy:
    """spec.automaticRepairs, with the grace period as a duration."""

    enabled: bool
    grace_period: timedelta
    action: RepairAction = RepairAction.REPLACE


@dataclass(frozen=True)
class InstanceHealth:
    """What a repair decision needs of one instance.

    `uid` is its pod's (None: no pod); `ready` whether the pod is Ready on its revision; `healthy` whether
    it counts as healthy under the policy's health gate; `not_ready_since` its Ready condition's
    lastTransitionTime while that is not True (None when the pod has no Ready condition yet);
    `updated_at` when it was created or last updated.
    """

    ordinal: int
    name: str
    uid: str | None
    ready: bool
    healthy: bool
    not_ready_since: datetime | None = None
    updated_at: datetime | None = None
    terminating: bool = False

    @property
    def exists(self) -> bool:
        return self.uid is not None

    @property
    def grace_from(self) -> datetime | None:
        """Where its grace period starts: "after the state change has completed", so the later of the
        moment it stopped being Ready and the moment it was created or updated. None while it is Ready."""
        if self.ready:
            return None
        marks = [m for m in (self.not_ready_since, self.updated_at) if m is not None]
        return max(marks, default=None)


@dataclass(frozen=True)
class RepairRecord:
    """The repair in flight, as status.repairs.current records it before any pod is touched.

    `pod_uid` is the pod the repair removes: a pod of the same name with another uid is its replacement.
    """

    instance: str
    ordinal: int
    action: RepairAction
    started_at: datetime
    pod_uid: str | None
    revision: str | None = None


@dataclass(frozen=True)
class StartRepair:
    """Record the repair of `ordinal`, then remove its pod; the pass creates it again."""

    ordinal: int
    instance: str
    action: RepairAction
    message: str


@dataclass(frozen=True)
class RemovePod:
    """The recorded repair's pod is still there: remove it (the operator stopped before it did, or the
    eviction was refused)."""

    record: RepairRecord


@dataclass(frozen=True)
class RepairWait:
    """Nothing to do now; plan again when something changes, or at `until` when that is set.

    `reason` is None when nothing is due (an unhealthy instance inside its grace period, or none).
    """

    reason: RepairReason | None
    message: str
    until: datetime | None = None


@dataclass(frozen=True)
class RepairFinished:
    """The recorded repair is over: a line of history, and the record cleared."""

    record: RepairRecord
    result: RepairResult
    message: str


RepairStep = StartRepair | RemovePod | RepairWait


@dataclass(frozen=True)
class RepairPlan:
    """The repair that just ended (if one did) and the next step."""

    step: RepairStep
    finished: RepairFinished | None = None


def plan_repair(
    *,
    policy: RepairPolicy,
    replicas: int,
    max_unhealthy_instance_percent: int,
    instances: Sequence[InstanceHealth],
    current: RepairRecord | None,
    batch_in_flight: bool,
    held: Collection[int] = (),
    now: datetime,
) -> RepairPlan:
    """The next repair step of a ScaleSet.

    `instances` are those of ordinals 0..replicas-1 (an ordinal not listed counts as missing);
    `current` the repair recorded in status; `batch_in_flight` whether an upgrade's batch is running
    (its instances belong to it: their start timeout judges them); `held` ordinals no repair may touch
    (the members of that batch, or of a Host maintenance batch).
    """
    by_ordinal = {i.ordinal: i for i in instances if 0 <= i.ordinal < replicas}
    finished = None
    if current is not None:
        ongoing = _follow(policy, replicas, by_ordinal, current, now)
        if isinstance(ongoing, RemovePod) and (
            not policy.enabled or batch_in_flight or current.ordinal in held
        ):
            # Not removed yet, and no longer wanted: turned off, or an upgrade's batch has it now.
            ongoing = RepairFinished(
                current, RepairResult.CANCELLED, f"the repair of {current.instance} was called off"
            )
        if not isinstance(ongoing, RepairFinished):
            return RepairPlan(ongoing)
        finished = ongoing
    return RepairPlan(
        _next(policy, replicas, max_unhealthy_instance_percent, by_ordinal, batch_in_flight, held, now),
        finished,
    )


def _follow(
    policy: RepairPolicy,
    replicas: int,
    fleet: dict[int, InstanceHealth],
    record: RepairRecord,
    now: datetime,
) -> RepairStep | RepairFinished:
    """Where the recorded repair stands."""
    if record.ordinal >= replicas:
        return RepairFinished(record, RepairResult.GONE, f"{record.instance} was scaled away")
    instance = fleet.get(record.ordinal)
    if instance is None or not instance.exists or instance.terminating:
        # Its pod is on its way out, or gone and about to be created again.
        return RepairWait(RepairReason.REPAIR_IN_PROGRESS, f"{record.instance} is being {_done(record)}")
    if instance.uid == record.pod_uid:
        if instance.ready:
            return RepairFinished(
                record,
                RepairResult.RECOVERED,
                f"{record.instance} became Ready before it was {_done(record)}",
            )
        return RemovePod(record)
    # The replacement runs: the repair is over once it is Ready, or once it has had a grace period of
    # its own ("the grace period is honored for any newly created instance").
    if instance.ready:
        return RepairFinished(record, RepairResult.REPAIRED, f"{record.instance} is Ready again")
    since = instance.grace_from or record.started_at
    deadline = since + policy.grace_period
    if deadline <= now:
        return RepairFinished(
            record,
            RepairResult.STILL_UNHEALTHY,
            f"{record.instance} was not Ready within {format_duration(policy.grace_period)} of its repair",
        )
    return RepairWait(
        RepairReason.REPAIR_IN_PROGRESS, f"waiting for {record.instance} to become Ready", deadline
    )


def _next(
    policy: RepairPolicy,
    replicas: int,
    max_unhealthy_instance_percent: int,
    fleet: dict[int, InstanceHealth],
    batch_in_flight: bool,
    held: Collection[int],
    now: datetime,
) -> RepairStep:
    """With no repair in flight: the instance to repair now, or why none is."""
    if not policy.enabled:
        return RepairWait(None, "automatic repairs are off")
    due: list[InstanceHealth] = []
    later: list[datetime] = []
    for ordinal in sorted(fleet):
        instance = fleet[ordinal]
        if not instance.exists or instance.terminating or instance.ready or ordinal in held:
            continue
        since = instance.grace_from
        if since is None:
            continue
        deadline = since + policy.grace_period
        if deadline <= now:
            due.append(instance)
        else:
            later.append(deadline)
    if not due:
        return RepairWait(
            None, "no instance has been unhealthy for its grace period", min(later, default=None)
        )
    names = ", ".join(i.name for i in due)
    if batch_in_flight:
        return RepairWait(
            RepairReason.HELD_FOR_UPGRADE, f"{names} wait(s) for the upgrade's running batch to finish"
        )
    down = sum(1 for ordinal in range(replicas) if not _healthy(fleet.get(ordinal)))
    budget = unavailability_budget(replicas, max_unhealthy_instance_percent)
    if down > budget:
        return RepairWait(
            RepairReason.HELD_BY_BUDGET,
            f"{down} of {replicas} instances are unhealthy, more than maxUnhealthyInstancePercent "
            f"({max_unhealthy_instance_percent} %, {budget} instance(s)) allows; {names} wait(s)",
        )
    # The one down longest first (ties: the lowest ordinal), one at a time.
    chosen = min(due, key=lambda i: (i.grace_from or now, i.ordinal))
    since = chosen.grace_from or now
    return StartRepair(
        chosen.ordinal,
        chosen.name,
        policy.action,
        f"{chosen.name} has not been Ready for {format_duration(now - since)}, "
        f"longer than the grace period of {format_duration(policy.grace_period)}",
    )


def _healthy(instance: InstanceHealth | None) -> bool:
    return instance is not None and instance.exists and not instance.terminating and instance.healthy


def _done(record: RepairRecord) -> str:
    return "replaced" if record.action == RepairAction.REPLACE else "restarted"
