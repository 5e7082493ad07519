"""The ScaleSet status: conditions with stable transition times, per-domain summaries, and the status write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaleset_operator.planning.batches import Complete, Step, Stop
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import InstanceState
from scaleset_operator.planning.rollback import Action


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: bool
    reason: str
    message: str


def merge_conditions(
    previous: Sequence[dict[str, Any]], updates: Sequence[ConditionUpdate], generation: int, now: str
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
