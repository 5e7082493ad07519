"""The ScaleSet status a pass writes, as a value: counts, revisions, conditions and their Events.

Conditions keep their lastTransitionTime while their status does not flip, as metav1 expects; the
Events the status implies (an eviction refused outside the batch, instances that cannot start) are
returned beside it for the caller to post before it writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.identity import LABEL_SLOT, label_selector
from scaleset_operator.planning.batches import Complete, Step, StepReason, Stop
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import HealthGate, InstanceState, start_failures, timestamp
from scaleset_operator.planning.rollback import Action, Lock, rollback_allowed
from scaleset_operator.planning.rollout import Notice, members_of
from scaleset_operator.planning.staged import is_staged


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: bool
    reason: str
    message: str


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], updates: Sequence[ConditionUpdate], generation: int, now: str
) -> list[dict[str, Any]]:
    """New conditions, keeping lastTransitionTime where the status did not flip (as metav1 expects)."""
    old = {c.get("type"): c for c in previous}
    merged = []
    for update in updates:
        status = "True" if update.status else "False"
        before = old.get(update.type)
        since = before.get("lastTransitionTime") if before and before.get("status") == status else now
        merged.append(
            {
                "type": update.type,
                "status": status,
                "reason": update.reason,
                "message": update.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return merged


def upgrade_domain_summaries(
    instances: Sequence[InstanceState], upgrade_domain_count: int, update_revision: str, healthy: set[str]
) -> list[dict[str, Any]]:
    """One entry per upgrade domain with instances: who is in it, the revision they share (None when
    they differ), how many are updated and how many healthy."""
    domains: list[dict[str, Any]] = []
    for index in range(upgrade_domain_count):
        members = [i for i in instances if upgrade_domain_of(i.ordinal, upgrade_domain_count) == index]
        if not members:
            continue
        revisions = {i.revision for i in members}
        domains.append(
            {
                "index": index,
                "instances": [i.name for i in members],
                "revision": revisions.pop() if len(revisions) == 1 else None,
                "updated": sum(1 for i in members if i.revision == update_revision),
                "healthy": sum(1 for i in members if i.name in healthy),
            }
        )
    return domains


@dataclass(frozen=True)
class FleetCounts:
    """How many instances are wanted, exist, are healthy and are on the update revision; `extra` are
    instances above `replicas` still being scaled away."""

    replicas: int
    existing: int
    healthy: int
    updated: int
    extra: int = 0


def scaleset_conditions(
    counts: FleetCounts,
    step: Step,
    *,
    update_revision: str,
    locked: bool,
    action: Action | None = None,
    held_back: str | None = None,
    single_instance_downtime: bool = False,
    staged: bool = False,
    eviction_refused: str | None = None,
    cannot_start: str | None = None,
) -> list[ConditionUpdate]:
    """Ready, Progressing, Stalled and Reconciling (and DowntimeOnUpgrade) for what the pass saw and decided.

    `held_back` is the message when instances are kept off the template's revision because it was
    rolled back: the ScaleSet is then not Ready and Stalled with reason RolledBack until the template
    changes, however healthy the instances are. `eviction_refused` says which removals a
    PodDisruptionBudget refused in this pass: the work waits (Ready and Progressing say so, reason
    EvictionBlocked), and nothing was deleted. `cannot_start` names instances of the update revision
    that will not start by themselves (planning.instances.start_failures): Stalled then, whatever the
    step, since only a change of the template (or of what it refers to) lets them start.
    """
    replicas = counts.replicas
    converged = (
        isinstance(step, Complete)
        and counts.existing == replicas
        and counts.healthy == replicas
        and not counts.extra
    )
    stalled = isinstance(step, Stop)
    settled_unhealthy = isinstance(step, Complete) and not converged and counts.existing == replicas
    doing = {Action.ROLLBACK: "RollingBack", Action.RESTART: "Restarting", None: "RollingUpgrade"}[action]
    if held_back is not None and not stalled:
        ready = ConditionUpdate("Ready", False, "RolledBack", held_back)
        progressing = ConditionUpdate("Progressing", not isinstance(step, Complete), "RolledBack", held_back)
        stall = ConditionUpdate("Stalled", True, "RolledBack", held_back)
    else:
        if settled_unhealthy:
            # The rollout is done; instances failing past their start timeout are a health matter.
            message = f"{counts.healthy} of {replicas} instances healthy on {update_revision}."
            ready = ConditionUpdate("Ready", False, "InstancesUnhealthy", message)
            progressing = ConditionUpdate("Progressing", False, "UpToDate", message)
        elif converged:
            message = f"{replicas} of {replicas} instances healthy on {update_revision}."
            ready = ConditionUpdate("Ready", True, "AllInstancesHealthy", message)
            progressing = ConditionUpdate("Progressing", False, "UpToDate", "Nothing to do.")
        else:
            message = (
                getattr(step, "message", "")
                or f"{counts.healthy} of {replicas} instances healthy, {counts.updated} updated."
            )
            reason = getattr(step, "reason", "Reconciling") or "Reconciling"
            ready = ConditionUpdate("Ready", False, reason, message)
            progressing = ConditionUpdate("Progressing", not stalled, doing if locked else "Scaling", message)
        stall = (
            ConditionUpdate("Stalled", True, str(step.reason), step.message)
            if isinstance(step, Stop)
            else ConditionUpdate("Stalled", False, "NotStalled", "")
        )
    if cannot_start is not None and held_back is None:
        stall = (
            ConditionUpdate("Stalled", True, str(step.reason), f"{cannot_start} {step.message}")
            if isinstance(step, Stop)
            else ConditionUpdate("Stalled", True, "InstancesCannotStart", cannot_start)
        )
    if eviction_refused is not None and not stalled:
        message = eviction_refused[0].upper() + eviction_refused[1:] + "; it is tried again."
        ready = ConditionUpdate("Ready", False, "EvictionBlocked", message)
        progressing = ConditionUpdate("Progressing", True, "EvictionBlocked", message)
    conditions = [
        ready,
        progressing,
        stall,
        # An eviction a budget refused is work left, whatever the counts say.
        reconciling_condition(ready, stall, (converged or settled_unhealthy) and eviction_refused is None),
    ]
    if single_instance_downtime and staged:
        conditions.append(
            ConditionUpdate(
                "DowntimeOnUpgrade",
                False,
                "StagedUpgrade",
                "Staged mode brings up the new instance beside the one that serves and swaps the Services "
                "to it once it is healthy, so a one-instance ScaleSet is upgraded without downtime.",
            )
        )
    elif single_instance_downtime:
        conditions.append(
            ConditionUpdate(
                "DowntimeOnUpgrade",
                True,
                "SingleInstance",
                "A ScaleSet with one instance cannot be upgraded without downtime; use two or more replicas.",
            )
        )
    return conditions


def reconciling_condition(ready: ConditionUpdate, stall: ConditionUpdate, at_rest: bool) -> ConditionUpdate:
    """Reconciling, of abnormal-true polarity (the kstatus conventions of Flux, kpt and cli-utils): True
    while the operator has work left, whatever Ready said before; False once at rest or stalled.

    kstatus reads Reconciling=True as InProgress before it looks at Ready, so a status written as a
    batch starts reads in progress even where Ready=True is still there from before.
    """
    if stall.status:
        return ConditionUpdate("Reconciling", False, stall.reason, stall.message)
    if at_rest:
        return ConditionUpdate("Reconciling", False, ready.reason, ready.message)
    return ConditionUpdate("Reconciling", True, ready.reason, ready.message)


@dataclass(frozen=True)
class ScaleSetView:
    """What a ScaleSet's status is computed from, as the pass holds it when it writes.

    `upgrade` and `conditions` are status.upgrade and status.conditions as stored (the latest the API
    server answered); `lock` is what `upgrade` says runs. `scaling_away` counts the instances above
    `replicas` still there. `held_back` says why instances are kept off the template's revision after a
    rollback, or is None when they are not.
    """

    name: str
    generation: int
    slot: str | None
    replicas: int
    upgrade_domain_count: int
    policy: UpgradePolicySpec
    template_revision: str
    current_revision: str
    update_revision: str
    upgrade: Mapping[str, Any]
    conditions: Sequence[Mapping[str, Any]]
    lock: Lock
    scaling_away: int = 0
    held_back: str | None = None


class RefusedEviction(Protocol):
    """An eviction a PodDisruptionBudget refused in this pass: the instance, and a sentence saying why."""

    @property
    def instance(self) -> str: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class StatusPlan:
    """The status to write (the whole of it) and the Events to post before writing it."""

    status: dict[str, Any]
    notices: list[Notice]


def plan_status(
    view: ScaleSetView,
    instances: Sequence[InstanceState],
    step: Step,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    refused: Sequence[RefusedEviction] = (),
) -> StatusPlan:
    """The status a pass writes last: StatefulSet-like counts (instances that exist, Ready, on the update
    revision), the selector of the production slot, the revisions, the conditions, status.upgrade with
    `rollbackAllowed` worked out again and `phase` Idle when none is set, the per-domain summaries, and
    `extra` (the summaries of other capabilities) after them.

    An eviction refused outside the recorded batch is a Warning EvictionBlocked once, while the
    conditions do not say so already (a batch member's refusal is the batch's own Event)."""
    gate = HealthGate.of(view.policy.health_check)
    healthy = {i.name for i in instances if gate.is_healthy(i, now)}
    upgrade = {
        **view.upgrade,
        "rollbackAllowed": not is_staged(view.policy)
        and rollback_allowed(view.lock, view.replicas, instances, gate, now),
    }
    notices = []
    was_refused = any(c.get("reason") == StepReason.EVICTION_BLOCKED for c in view.conditions)
    if refused and not was_refused and not any(r.instance in members_of(upgrade) for r in refused):
        notices.append(
            Notice(
                "Warning", str(StepReason.EVICTION_BLOCKED), "; ".join(r.describe() for r in refused) + "."
            )
        )
    conditions, cannot_start = plan_conditions(view, instances, step, now, refused)
    status = {
        "observedGeneration": view.generation,
        "replicas": sum(1 for i in instances if i.exists),
        "readyReplicas": sum(1 for i in instances if i.ready),
        "updatedReplicas": sum(1 for i in instances if i.revision == view.update_revision),
        "labelSelector": label_selector(view.name) + (f",{LABEL_SLOT}={view.slot}" if view.slot else ""),
        "currentRevision": view.current_revision,
        "updateRevision": view.update_revision,
        "conditions": conditions,
        "upgrade": {**upgrade, "phase": upgrade.get("phase") or "Idle"},
        "upgradeDomains": upgrade_domain_summaries(
            instances, view.upgrade_domain_count, view.update_revision, healthy
        ),
        **(extra or {}),
    }
    return StatusPlan(status, [*notices, *cannot_start])


def plan_conditions(
    view: ScaleSetView,
    instances: Sequence[InstanceState],
    step: Step,
    now: datetime,
    refused: Sequence[RefusedEviction] = (),
) -> tuple[list[dict[str, Any]], list[Notice]]:
    """The conditions for what the pass saw and decided, transition times kept where unchanged, and a
    Warning InstancesCannotStart when the instances that cannot start are news to the conditions."""
    gate = HealthGate.of(view.policy.health_check)
    healthy = {i.name for i in instances if gate.is_healthy(i, now)}
    cannot_start = start_failures(instances, gate, view.update_revision, now)
    notices = []
    if cannot_start and not any(cannot_start in (c.get("message") or "") for c in view.conditions):
        notices.append(Notice("Warning", "InstancesCannotStart", cannot_start))
    conditions = scaleset_conditions(
        FleetCounts(
            replicas=view.replicas,
            existing=sum(1 for i in instances if i.exists),
            healthy=len(healthy),
            updated=sum(1 for i in instances if i.revision == view.update_revision),
            extra=view.scaling_away,
        ),
        step,
        update_revision=view.update_revision,
        locked=view.lock.locked,
        action=view.lock.action,
        held_back=view.held_back,
        single_instance_downtime=view.replicas == 1 and not view.policy.rolling_upgrade.max_surge,
        staged=is_staged(view.policy),
        eviction_refused="; ".join(r.describe() for r in refused) or None,
        cannot_start=cannot_start,
    )
    return merge_conditions(view.conditions, conditions, view.generation, timestamp(now)), notices


def plan_refusal(
    status: Mapping[str, Any], generation: int, reason: str, message: str, now: datetime
) -> StatusPlan | None:
    """The conditions of a pass that cannot do its work (input the operator cannot honour, a write the
    API server refuses until something changes): not Ready, not Progressing (what runs is kept), Stalled,
    with a Warning Event; None when the stored conditions say so already."""
    conditions = merge_conditions(
        status.get("conditions") or [],
        [
            ConditionUpdate("Ready", False, reason, message),
            ConditionUpdate("Progressing", False, reason, "Running instances are kept as they are."),
            ConditionUpdate("Stalled", True, reason, message),
        ],
        generation,
        timestamp(now),
    )
    if conditions == status.get("conditions"):
        return None
    return StatusPlan(
        {"conditions": conditions, "observedGeneration": generation}, [Notice("Warning", reason, message)]
    )
