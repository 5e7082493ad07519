"""Rollback of a running upgrade: when it is allowed, when the policy asks for it, and its next step.

A rollback is a rollout back to the revision the upgrade came from (`fromRevision`), so it reuses the
batch planner with three differences, each for a reason:

- Upgrade domains go in descending order. The forward rollout left domains 0..k on the new revision;
  undoing them from k down keeps that shape (a prefix of domains on the new revision) at every moment,
  so the fleet always looks like a forward rollout stopped earlier, and the domain that changed last,
  the one most likely failing, is restored first.
- Unhealthy instances go first (prioritizeUnhealthyInstances), whatever the policy says: a rollback
  is a repair, and the instances that are down cost nothing to move and give capacity back soonest.
- Manual mode's walk does not hold it (the user who asked for the rollback released it), and an
  instance start timeout under `onInstanceStartTimeout: Rollback` stops it (Pause): there is nothing
  further back to roll to.

Instances still on `fromRevision` are up to date for the planner, so they are never touched: the same
pod, uid and restart count. Batch size and the health limits are the policy's, as for a rollout.
`rollbackFailedInstancesOnPolicyBreach` rolls back the failed instances only: the others are shown to
the planner as up to date, and stay where they are.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from scaleset_operator.api.loading import parse_quantity
from scaleset_operator.api.models import OnInstanceStartTimeout, UpgradeMode, UpgradePolicySpec
from scaleset_operator.planning.batches import Step, StepReason, Stop, next_step
from scaleset_operator.planning.instances import HealthGate, InstanceState, RolloutState


class Action(StrEnum):
    """An imperative action that runs under the upgrade lock, one at a time."""

    ROLLBACK = "Rollback"
    RESTART = "Restart"


class Refusal(StrEnum):
    """Why an asked-for action was not taken, as the reason of its Warning Event."""

    NO_UPGRADE_IN_PROGRESS = "RollbackNotAllowed"
    WOULD_SHRINK = "RollbackWouldShrink"
    ACTION_IN_PROGRESS = "ActionInProgress"
    UPGRADE_IN_PROGRESS = "RestartNotAllowed"
    STAGED_MODE = "RollbackNotInStagedMode"


@dataclass(frozen=True)
class Lock:
    """What status.upgrade says runs now: an upgrade (`locked`), and which action, if any, holds it."""

    locked: bool
    action: Action | None = None
    from_revision: str | None = None
    to_revision: str | None = None


@dataclass(frozen=True)
class Accepted:
    message: str


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    message: str


Decision = Accepted | Refused


def rollback_allowed(
    lock: Lock, replicas: int, instances: Sequence[InstanceState], gate: HealthGate, now: datetime
) -> bool:
    """A rollback is allowed only while an upgrade is in progress; a finished upgrade is undone by a new one.

    The upgrade is in progress until its last batch has passed its health gate: while an instance is
    not yet on the new revision (the seed's rule), and after that while an instance on it is not
    healthy and the upgrade holds the lock (a failing last batch, or the one batch of a single-instance
    ScaleSet, can be rolled back). Once every instance is on the new revision and healthy, it is done.
    """
    if not lock.locked or lock.action is not None or lock.to_revision is None or lock.from_revision is None:
        return False
    if lock.to_revision == lock.from_revision:
        return False
    by_ordinal = {i.ordinal: i for i in instances}
    for ordinal in range(replicas):
        instance = by_ordinal.get(ordinal)
        if instance is None or not instance.running or instance.revision != lock.to_revision:
            return True
        if not gate.is_healthy(instance, now):
            return True
    return False


def decide_rollback(
    lock: Lock,
    replicas: int,
    instances: Sequence[InstanceState],
    from_template: Mapping[str, Any] | None,
    to_template: Mapping[str, Any] | None,
    gate: HealthGate,
    now: datetime,
) -> Decision:
    """Whether a rollback asked for now (by the user or by the policy) may start."""
    if lock.action is not None:
        return Refused(
            Refusal.ACTION_IN_PROGRESS,
            f"A {lock.action.lower()} is already in progress; wait for it to finish before asking for a rollback.",
        )
    if not rollback_allowed(lock, replicas, instances, gate, now):
        return Refused(
            Refusal.NO_UPGRADE_IN_PROGRESS,
            "No upgrade is in progress, so there is nothing to roll back; to undo a finished upgrade, "
            "apply the previous template as a new update.",
        )
    if from_template is None:
        return Refused(
            Refusal.NO_UPGRADE_IN_PROGRESS,
            f"The revision {lock.from_revision} the upgrade came from is no longer stored, so it cannot be "
            "rolled back to; apply a new template instead.",
        )
    shrinking = shrunk_local_resources(to_template or {}, from_template)
    if shrinking:
        return Refused(
            Refusal.WOULD_SHRINK,
            f"Rolling back to {lock.from_revision} would shrink local resources the upgrade grew "
            f"({'; '.join(shrinking)}); apply a new template instead.",
        )
    return Accepted(f"Rolling back from {lock.to_revision} to {lock.from_revision}.")


def decide_restart(lock: Lock) -> Decision:
    """A restart of every instance is a role restart between upgrades, never during one."""
    if lock.action is not None:
        return Refused(
            Refusal.ACTION_IN_PROGRESS,
            f"A {lock.action.lower()} is already in progress; wait for it to finish before asking for a restart.",
        )
    if lock.locked:
        return Refused(
            Refusal.UPGRADE_IN_PROGRESS,
            "An upgrade is in progress, and restarting while it runs is refused; ask again once it is done.",
        )
    return Accepted("Restarting every instance, upgrade domain by upgrade domain.")


@dataclass(frozen=True)
class PolicyRollback:
    """A rollback the policy starts by itself: why, and which instances go back.

    `instances` None is the whole upgrade (every updated instance); otherwise only those ordinals.
    """

    reason: StepReason
    instances: tuple[int, ...] | None = None


def policy_rollback(
    policy: UpgradePolicySpec, step: Step, *, automatic_os_upgrade: bool = False
) -> PolicyRollback | None:
    """The rollback the policy asks for after this step, or None.

    - `onInstanceStartTimeout: Rollback`: the whole upgrade, once an instance of a batch missed its
      start timeout.
    - An automatic OS image upgrade: the whole upgrade on any breach, unless
      `automaticOSUpgrade.disableAutomaticRollback`.
    - `rollbackFailedInstancesOnPolicyBreach`: the API's "rollback failed instances to previous model if
      the rolling upgrade policy is violated": after a breach of maxUnhealthyUpgradedInstancePercent,
      the unhealthy instances on the update revision go back; healthy upgraded instances stay, and so
      do instances never updated. A breach of maxUnhealthyInstancePercent, checked before a batch, has
      no failed upgraded instance to roll back.
    """
    if not isinstance(step, Stop):
        return None
    if step.reason == StepReason.ROLLBACK_REQUIRED:
        return PolicyRollback(step.reason)
    breaches = (
        StepReason.TOO_MANY_UNHEALTHY,
        StepReason.TOO_MANY_UNHEALTHY_UPGRADED,
        StepReason.INSTANCE_START_TIMEOUT,
    )
    if step.reason not in breaches:
        return None
    if automatic_os_upgrade and not policy.automatic_os_upgrade.disable_automatic_rollback:
        return PolicyRollback(step.reason)
    if step.reason == StepReason.TOO_MANY_UNHEALTHY_UPGRADED and (
        policy.rolling_upgrade.rollback_failed_instances_on_policy_breach
    ):
        return PolicyRollback(step.reason, tuple(sorted(step.ordinals)))
    return None


def rollback_policy(policy: UpgradePolicySpec) -> UpgradePolicySpec:
    """The policy a rollback (or a restart) runs under: same limits, unhealthy first, no walk, no
    rollback of itself."""
    mode = UpgradeMode.ROLLING if policy.mode == UpgradeMode.MANUAL else policy.mode
    health_check = policy.health_check
    if health_check.on_instance_start_timeout == OnInstanceStartTimeout.ROLLBACK:
        health_check = health_check.model_copy(
            update={"on_instance_start_timeout": OnInstanceStartTimeout.PAUSE}
        )
    rolling = policy.rolling_upgrade.model_copy(update={"prioritize_unhealthy_instances": True})
    return policy.model_copy(update={"mode": mode, "health_check": health_check, "rolling_upgrade": rolling})


def rollback_step(
    *,
    replicas: int,
    upgrade_domain_count: int,
    paused: bool,
    policy: UpgradePolicySpec,
    target_revision: str,
    instances: Sequence[InstanceState],
    rollout: RolloutState,
    now: datetime,
    only: Collection[int] | None = None,
) -> Step:
    """The next step of moving every instance off the failed revision back to `target_revision`, or
    only the instances `only` names (the failed ones, for rollbackFailedInstancesOnPolicyBreach)."""
    return next_step(
        replicas=replicas,
        upgrade_domain_count=upgrade_domain_count,
        walk_upgrade_domain=None,
        paused=paused,
        policy=rollback_policy(policy),
        update_revision=target_revision,
        instances=instances if only is None else kept_view(instances, target_revision, only),
        rollout=rollout,
        now=now,
        descending_domains=True,
    )


def kept_view(
    instances: Sequence[InstanceState], revision: str, moving: Collection[int]
) -> list[InstanceState]:
    """The instances as the planner sees them when only `moving` may go to `revision`: every other
    instance that exists is shown on `revision` already, so no batch ever holds it."""
    return [replace(i, revision=revision) if i.exists and i.ordinal not in moving else i for i in instances]


def held_view(
    instances: Sequence[InstanceState], rolled_back_revision: str | None, update_revision: str
) -> list[InstanceState]:
    """After a rollback of the failed instances only, the healthy ones it left on the rolled-back revision
    stay there while spec.template still asks for that revision: the planner sees them as up to date."""
    if rolled_back_revision is None:
        return list(instances)
    return [
        replace(i, revision=update_revision) if i.exists and i.revision == rolled_back_revision else i
        for i in instances
    ]


# --------------------------------------------------------------------------- local resources


def _empty_dir_limits(template: Mapping[str, Any]) -> dict[str, str | None]:
    volumes = (template.get("spec") or {}).get("volumes") or []
    return {
        str(v["name"]): (v.get("emptyDir") or {}).get("sizeLimit")
        for v in volumes
        if isinstance(v, dict) and "name" in v and "emptyDir" in v
    }


def _ephemeral_storage(template: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    spec = template.get("spec") or {}
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            resources = container.get("resources") or {}
            for kind in ("requests", "limits"):
                value = (resources.get(kind) or {}).get("ephemeral-storage")
                if value is not None:
                    found[
                        f"spec.template.spec.{key}[{container.get('name')}].resources.{kind}.ephemeral-storage"
                    ] = str(value)
    return found


def _smaller(new: str | None, old: str | None) -> bool:
    """`new` is a smaller limit than `old`; None is unlimited. An unparsable value is not compared."""
    if new is None:
        return False
    if old is None:
        return True
    try:
        return parse_quantity(new) < parse_quantity(old)
    except ValueError:
        return False


def shrunk_local_resources(grown: Mapping[str, Any], back_to: Mapping[str, Any]) -> list[str]:
    """Local resources (emptyDir sizeLimit, ephemeral-storage) that going from `grown` back to `back_to`
    would shrink, each as `field from X to Y`. An instance's temp disk may already hold more than the
    smaller size, so such a change is refused during an upgrade, as the seed refuses it for a cloud
    service."""
    problems: list[str] = []
    old_dirs, new_dirs = _empty_dir_limits(grown), _empty_dir_limits(back_to)
    for name, limit in sorted(new_dirs.items()):
        if name in old_dirs and _smaller(limit, old_dirs[name]):
            before = old_dirs[name] or "unlimited"
            problems.append(f"spec.template.spec.volumes[{name}].emptyDir.sizeLimit from {before} to {limit}")
    old_storage, new_storage = _ephemeral_storage(grown), _ephemeral_storage(back_to)
    for field_name, value in sorted(old_storage.items()):
        after = new_storage.get(field_name)
        if after is None and field_name.endswith(".requests.ephemeral-storage"):
            problems.append(f"{field_name} from {value} to none")  # no request reserves nothing
        elif after is not None and _smaller(after, value):
            problems.append(f"{field_name} from {value} to {after}")
    return problems
