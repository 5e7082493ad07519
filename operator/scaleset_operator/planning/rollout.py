"""Transitions of status.upgrade, the record of a rollout: begin, retarget, supersede, complete.

Each takes the record as stored (a mapping in the API's camelCase keys) and returns the new record with
the Events the transition implies, as values; the caller writes the record and posts the Events. A key
set to None is kept as None: in a merge patch it deletes the stored field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaleset_operator.planning.batches import StartBatch, Step, StepReason, Wait
from scaleset_operator.planning.instances import HealthGate, InstanceState, timestamp, timestamp_precise
from scaleset_operator.planning.rollback import Action
from scaleset_operator.planning.scheduled_events import BatchTiming

HISTORY_KEPT = 10


@dataclass(frozen=True)
class Notice:
    """A Kubernetes Event on the ScaleSet: `Normal` or `Warning`, a CamelCase reason and a sentence."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Revisions:
    """The revisions a pass works with: the template's, the one instances run, the one they go to."""

    template: str
    current: str
    update: str


def batch_ordinals(batch: Mapping[str, Any]) -> list[int]:
    """The ordinals of the instances a recorded batch names (the number after the last dash)."""
    ordinals = []
    for name in batch.get("instances") or []:
        tail = str(name).rsplit("-", 1)[-1]
        if tail.isdigit():
            ordinals.append(int(tail))
    return ordinals


def where(upgrade_domain: int | None) -> str:
    return "across all upgrade domains" if upgrade_domain is None else f"in upgrade domain {upgrade_domain}"


def members_of(upgrade: Mapping[str, Any]) -> set[str]:
    """The instances of the batch status.upgrade records."""
    return set((upgrade.get("currentBatch") or {}).get("instances") or [])


def supersede(upgrade: Mapping[str, Any], revisions: Revisions) -> tuple[dict[str, Any], list[Notice]]:
    """A new template ends a rollback (rolling forward to it instead) or a restart (upgrading to it)."""
    record, notices = dict(upgrade), []
    template = revisions.template
    rollback = record.get("rollback") if record.get("locked") else None
    if rollback and template not in (rollback.get("fromRevision"), rollback.get("toRevision")):
        notices.append(
            Notice(
                "Normal",
                "RollbackSuperseded",
                f"spec.template changed during the rollback; rolling forward to {template} instead.",
            )
        )
        record = {**record, "rollback": None, "phase": "RollingForward", "currentBatch": None}
    if record.get("locked") and record.get("restart") and template != revisions.current:
        notices.append(
            Notice(
                "Normal",
                "RestartSuperseded",
                f"spec.template changed during the restart; upgrading to {template} instead.",
            )
        )
        record = {**record, "restart": None, "locked": False, "currentBatch": None}
    return record, notices


def begin(
    upgrade: Mapping[str, Any], revisions: Revisions, mode: str, instances: int, now: datetime
) -> tuple[dict[str, Any], list[Notice]]:
    """Start, re-target or supersede the upgrade as the template asks."""
    record, notices = supersede(upgrade, revisions)
    if record.get("locked") and (record.get("rollback") or record.get("restart")):
        return record, notices
    if revisions.current != revisions.update and not record.get("locked"):
        record.update(
            phase="RollingForward",
            locked=True,
            startedAt=timestamp(now),
            fromRevision=revisions.current,
            toRevision=revisions.update,
            currentBatch=None,
            rolledBackRevision=None,
        )
        notices.append(
            Notice(
                "Normal",
                "UpgradeStarted",
                f"Rolling {revisions.current} to {revisions.update} ({mode} mode, {instances} instances).",
            )
        )
    elif record.get("locked") and record.get("toRevision") != revisions.update:
        record["toRevision"] = revisions.update
        notices.append(
            Notice(
                "Normal",
                "UpgradeRetargeted",
                f"The template changed during the upgrade; now rolling to {revisions.update}.",
            )
        )
    return record, notices


def batch_completed(upgrade: Mapping[str, Any]) -> list[Notice]:
    """The Event of the batch the record holds, now that the next step goes past it."""
    finished = upgrade.get("currentBatch")
    if not finished:
        return []
    return [
        Notice(
            "Normal",
            "BatchCompleted",
            f"Batch {where(finished.get('upgradeDomain'))} is healthy: "
            f"{', '.join(finished.get('instances') or [])}.",
        )
    ]


def complete(
    upgrade: Mapping[str, Any], revisions: Revisions, now: datetime
) -> tuple[dict[str, Any], list[Notice]]:
    """Every instance runs the update revision: the upgrade goes to history (the last HISTORY_KEPT)."""
    history = [
        *(upgrade.get("history") or []),
        {
            "fromRevision": upgrade.get("fromRevision") or revisions.current,
            "toRevision": revisions.update,
            "startedAt": upgrade.get("startedAt"),
            "finishedAt": timestamp(now),
            "result": "Completed",
        },
    ]
    notices = [
        *batch_completed(upgrade),
        Notice("Normal", "UpgradeCompleted", f"Every instance runs {revisions.update}."),
    ]
    record = {
        "phase": "Completed",
        "locked": False,
        "history": history[-HISTORY_KEPT:],
        "fromRevision": upgrade.get("fromRevision"),
        "toRevision": revisions.update,
        "startedAt": upgrade.get("startedAt"),
        "lastAction": upgrade.get("lastAction"),
    }
    return record, notices


def announce(upgrade: Mapping[str, Any], notice: Notice) -> tuple[dict[str, Any], list[Notice]]:
    """A wait or a stop: its reason and message recorded, its Event posted only when the reason changes."""
    record = {**upgrade, "message": notice.message}
    notices = [] if upgrade.get("reason") == notice.reason else [notice]
    record["reason"] = notice.reason
    return record, notices


_PHASE = {Action.ROLLBACK: "RollingBack", Action.RESTART: "Restarting", None: "RollingForward"}
_VERB = {Action.ROLLBACK: "Rolling back", Action.RESTART: "Restarting", None: "Upgrading"}


def phase_of(action: Action | None) -> str:
    """The phase of an upgrade under way: rolling forward, rolling back or restarting."""
    return _PHASE[action]


def record_batch(
    upgrade: Mapping[str, Any],
    step: StartBatch,
    names: list[str],
    *,
    phase: str,
    action: Action | None,
    revisions: Revisions,
    target: str,
    now: datetime,
) -> tuple[dict[str, Any], list[Notice]]:
    """The batch a StartBatch starts, recorded (before any of its instances is touched), and its Event."""
    record = {
        **upgrade,
        "phase": phase,
        "currentUpgradeDomain": step.batch.upgrade_domain,
        "currentBatch": {
            "upgradeDomain": step.batch.upgrade_domain,
            "instances": names,
            "startedAt": timestamp(now),
            "revision": target,
        },
        "message": step.message or None,
        "reason": str(step.reason),
    }
    goal = "" if action is Action.RESTART else f" to {revisions.update}"
    message = f"{_VERB[action]} {', '.join(names)} {where(step.batch.upgrade_domain)}{goal}."
    return record, [Notice("Normal", "BatchStarted", message)]


def batch_finished(
    batch: Mapping[str, Any] | None,
    revision: str | None,
    target: str,
    members: list[InstanceState],
    gate: HealthGate,
    now: datetime,
) -> dict[str, Any] | None:
    """The recorded batch with the moment it is seen healthy (precise, to count the pause from), when
    this is that moment: it was not finished, it moves to `target`, and each of its `members` runs
    `target` and is healthy. None when there is nothing to record."""
    if not batch or batch.get("finishedAt") or revision != target:
        return None
    if members and all(i.revision == target and gate.is_healthy(i, now) for i in members):
        return {**batch, "finishedAt": timestamp_precise(now)}
    return None


def waiting_for_notices(
    upgrade: Mapping[str, Any], step: Step, timing: BatchTiming
) -> tuple[dict[str, Any], Step, list[Notice]]:
    """The batch's timing in the record while its instances have been told of the update by a scheduled
    event and not all have agreed: the step becomes a wait for their approval (or for `startsBy`)."""
    batch = dict(upgrade["currentBatch"])
    if timing.ready:
        batch.pop("scheduledEvents", None)
        return {**upgrade, "currentBatch": batch}, step, []
    when = timing.starts_by.isoformat() if timing.starts_by else "once every instance has been told"
    message = (
        f"{', '.join(timing.waiting_for)} {'has' if len(timing.waiting_for) == 1 else 'have'} been told "
        f"of the coming update by a scheduled event; it starts when each approves it, or at {when}"
    )
    batch["scheduledEvents"] = {
        "waitingFor": list(timing.waiting_for),
        "startsBy": timestamp(timing.starts_by) if timing.starts_by else None,
    }
    reason = StepReason.WAITING_FOR_APPROVAL
    notices = [] if upgrade.get("reason") == reason else [Notice("Normal", str(reason), message)]
    record = {**upgrade, "currentBatch": batch, "reason": str(reason), "message": message}
    return record, Wait(reason, message, timing.starts_by), notices


def eviction_blocked(
    upgrade: Mapping[str, Any], refusals: list[str]
) -> tuple[dict[str, Any], Step, list[Notice]]:
    """The batch waits: a PodDisruptionBudget refused to let its instances go (`refusals` say which and
    why), and nothing was deleted. The Event is posted only when the record did not already say so."""
    message = "The batch waits: " + "; ".join(refusals)
    reason = StepReason.EVICTION_BLOCKED
    notices = [] if upgrade.get("reason") == reason else [Notice("Warning", str(reason), message)]
    return {**upgrade, "reason": str(reason), "message": message}, Wait(reason, message), notices
