"""A role restart: every instance recreated once, upgrade domain by upgrade domain, under the policy.

The restart is asked for at one moment (`requested_at`); an instance is restarted once it has been
put on its revision (created, or updated) at or after that moment. The batch planner needs no new
rule for it: seen through `restart_view`, instances restarted already are "on the update revision"
`restart_revision(requested_at)` and the others are not, so batches, domain order, health gates and
limits are exactly a rollout's. The policy is `rollback_policy`'s: Manual mode's walk does not hold a
restart, and a restart is never rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.planning.batches import Step, next_step
from scaleset_operator.planning.instances import InstanceState, RolloutState
from scaleset_operator.planning.rollback import rollback_policy

_PENDING = "restart-pending"


def restart_revision(requested_at: datetime) -> str:
    """The name the planner knows a restart by: one per request, so a second restart is a new one."""
    return "restart@" + requested_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def restarted(instance: InstanceState, requested_at: datetime) -> bool:
    return instance.running and instance.updated_at is not None and instance.updated_at >= requested_at


def restart_view(instances: Sequence[InstanceState], requested_at: datetime) -> list[InstanceState]:
    """The instances as the planner sees them during a restart; missing ones stay missing."""
    target = restart_revision(requested_at)
    return [
        replace(i, revision=target if restarted(i, requested_at) else _PENDING) if i.exists else i
        for i in instances
    ]


def restart_step(
    *,
    replicas: int,
    upgrade_domain_count: int,
    paused: bool,
    policy: UpgradePolicySpec,
    instances: Sequence[InstanceState],
    rollout: RolloutState,
    requested_at: datetime,
    now: datetime,
) -> Step:
    """The next step of the restart asked for at `requested_at`."""
    return next_step(
        replicas=replicas,
        upgrade_domain_count=upgrade_domain_count,
        walk_upgrade_domain=None,
        paused=paused,
        policy=rollback_policy(policy),
        update_revision=restart_revision(requested_at),
        instances=restart_view(instances, requested_at),
        rollout=rollout,
        now=now,
    )
