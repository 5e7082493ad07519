"""The static preview of a rollout: the planner itself, run against a simulated healthy fleet and clock."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.planning.batches import Complete, StartBatch, StepReason, Stop, Wait, next_step
from scaleset_operator.planning.domains import spread
from scaleset_operator.planning.instances import Batch, InstanceState, RolloutState

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_CURRENT = "current"
_UPDATE = "update"


# The planner's waits for the running batch's own instances; any other answer means it has moved on.
_WAITING_FOR_BATCH = frozenset({StepReason.BATCH_IN_PROGRESS, StepReason.INSTANCES_STARTING})


@dataclass(frozen=True)
class BatchTiming:
    """When a previewed batch starts and when the planner sees it healthy, from the rollout's start."""

    started: timedelta
    healthy: timedelta


@dataclass(frozen=True)
class RolloutPreview:
    """The upgrade domains and, in order, the batches a full rollout from an older revision would take.

    `held_by` is what stops the rollout short of the last instance (Manual mode's walkUpgradeDomain,
    or maxUnhealthyInstancePercent when instances unhealthy already leave no room), None when it runs
    to the end; `shrunk` says, batch by batch, why a batch holds fewer instances than
    maxBatchInstancePercent allows ("" when it does not); `minimum_duration` is the time the health
    gates and pauses take at the least, with every instance healthy once updated (and Ready
    `instance_start` after its update); `timeline` says, batch by batch, when it starts and when it
    has passed its health gate.
    """

    upgrade_domains: list[list[int]]
    batches: list[Batch]
    held_by: Wait | Stop | None = None
    minimum_duration: timedelta = timedelta(0)
    shrunk: list[str] = field(default_factory=list)
    timeline: list[BatchTiming] = field(default_factory=list)


def plan_rollout(
    *,
    replicas: int,
    upgrade_domain_count: int,
    policy: UpgradePolicySpec,
    walk_upgrade_domain: int | None = None,
    instance_names: Callable[[int], str] | None = None,
    unhealthy: Collection[int] = (),
    instance_start: timedelta = timedelta(0),
) -> RolloutPreview:
    """Preview a rollout by asking `next_step` again and again, as the controller would.

    Every instance starts on an older revision, healthy unless `unhealthy` names it (down of its own
    accord until it is updated); each instance becomes Ready `instance_start` after its update (at
    once by default), and the clock jumps to whatever the planner waits for. Since the preview is the planner's own answers, it cannot
    disagree with what the controller will do on such a fleet.
    """
    name_of = instance_names or (lambda ordinal: f"instance-{ordinal}")
    instances = {
        ordinal: InstanceState(
            name=name_of(ordinal),
            ordinal=ordinal,
            revision=_CURRENT,
            ready=ordinal not in unhealthy,
            ready_since=None if ordinal in unhealthy else _EPOCH,
            updated_at=_EPOCH,
        )
        for ordinal in range(replicas)
    }
    rollout = RolloutState()
    batches: list[Batch] = []
    shrunk: list[str] = []
    started: list[datetime] = []
    healthy: list[datetime] = []
    starting: dict[int, datetime] = {}  # updated instances not Ready yet, and when they will be
    # The fleet has been Ready for exactly the stabilisation period when the rollout begins.
    start = now = _EPOCH + timedelta(seconds=policy.health_check.stabilization_seconds)
    held_by: Wait | Stop | None = None
    # Each batch needs at most a start, a wait for its instances, one for stabilisation and a pause:
    # anything beyond that means the planner is going round in circles, a bug to surface, not to preview.
    for _ in range(4 * replicas + 4):
        for ordinal, ready_at in list(starting.items()):
            if ready_at <= now:
                instances[ordinal] = replace(instances[ordinal], ready=True, ready_since=ready_at)
                del starting[ordinal]
        step = next_step(
            replicas=replicas,
            upgrade_domain_count=upgrade_domain_count,
            walk_upgrade_domain=walk_upgrade_domain,
            paused=False,
            policy=policy,
            update_revision=_UPDATE,
            instances=list(instances.values()),
            rollout=rollout,
            now=now,
        )
        if len(healthy) < len(started) and not (isinstance(step, Wait) and step.reason in _WAITING_FOR_BATCH):
            healthy.append(now)
        if isinstance(step, Complete):
            break
        if isinstance(step, StartBatch):
            batches.append(step.batch)
            shrunk.append(step.shrunk_because)
            started.append(now)
            rollout = RolloutState(batch=step.batch, revision=_UPDATE, batch_started_at=now)
            for ordinal in step.batch.ordinals:
                ready = not instance_start
                instances[ordinal] = replace(
                    instances[ordinal],
                    revision=_UPDATE,
                    ready=ready,
                    ready_since=now if ready else None,
                    updated_at=now,
                )
                if not ready:
                    starting[ordinal] = now + instance_start
        elif isinstance(step, Wait) and (moment := _next_moment(step, starting, now)) is not None:
            now = moment
        else:
            held_by = step
            break
    else:
        raise RuntimeError(f"the planner did not finish a preview of {replicas} instances")
    return RolloutPreview(
        upgrade_domains=spread(replicas, upgrade_domain_count),
        batches=batches,
        held_by=held_by,
        minimum_duration=now - start,
        shrunk=shrunk,
        timeline=[
            BatchTiming(begun - start, seen - start) for begun, seen in zip(started, healthy, strict=True)
        ],
    )


def _next_moment(step: Wait, starting: dict[int, datetime], now: datetime) -> datetime | None:
    """The moment the preview's clock jumps to: what the planner waits for, or an instance turning Ready."""
    moments = [moment for moment in (step.until, *starting.values()) if moment is not None and moment > now]
    return min(moments, default=None)
