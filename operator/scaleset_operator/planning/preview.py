"""The static preview of a rollout: the planner itself, run against a simulated healthy fleet and clock."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.planning.batches import Complete, StartBatch, Stop, Wait, next_step
from scaleset_operator.planning.domains import spread
from scaleset_operator.planning.instances import Batch, InstanceState, RolloutState

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_CURRENT = "current"
_UPDATE = "update"


@dataclass(frozen=True)
class RolloutPreview:
    """The upgrade domains and, in order, the batches a full rollout from an older revision would take.

    `held_by` is what stops the rollout short of the last instance (Manual mode's walkUpgradeDomain,
    or maxUnhealthyInstancePercent when instances unhealthy already leave no room), None when it runs
    to the end; `shrunk` says, batch by batch, why a batch holds fewer instances than
    maxBatchInstancePercent allows ("" when it does not); `minimum_duration` is the time the health
    gates and pauses take at the least, with every instance healthy once updated.
    """

    upgrade_domains: list[list[int]]
    batches: list[Batch]
    held_by: Wait | Stop | None = None
    minimum_duration: timedelta = timedelta(0)
    shrunk: list[str] = field(default_factory=list)


def plan_rollout(
    *,
    replicas: int,
    upgrade_domain_count: int,
    policy: UpgradePolicySpec,
    walk_upgrade_domain: int | None = None,
    instance_names: Callable[[int], str] | None = None,
    unhealthy: Collection[int] = (),
) -> RolloutPreview:
    """Preview a rollout by asking `next_step` again and again, as the controller would.

    Every instance starts on an older revision, healthy unless `unhealthy` names it (down of its own
    accord until it is updated); each batch becomes Ready the moment it is updated, and the clock
    jumps to whatever the planner waits for. Since the preview is the planner's own answers, it cannot
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
    # The fleet has been Ready for exactly the stabilisation period when the rollout begins.
    start = now = _EPOCH + timedelta(seconds=policy.health_check.stabilization_seconds)
    held_by: Wait | Stop | None = None
    # Each batch needs at most a start, a wait for stabilisation and a pause: anything beyond that
    # means the planner is going round in circles, which is a bug to surface, not to preview.
    for _ in range(3 * replicas + 3):
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
        if isinstance(step, Complete):
            break
        if isinstance(step, StartBatch):
            batches.append(step.batch)
            shrunk.append(step.shrunk_because)
            rollout = RolloutState(batch=step.batch, revision=_UPDATE, batch_started_at=now)
            for ordinal in step.batch.ordinals:
                instances[ordinal] = replace(
                    instances[ordinal], revision=_UPDATE, ready=True, ready_since=now, updated_at=now
                )
        elif isinstance(step, Wait) and step.until is not None and step.until > now:
            now = step.until
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
    )
