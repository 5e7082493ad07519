"""Automatic repairs in the reconcile pass: read the instances, ask planning/repairs.py, carry it out.

The repair in flight is recorded in `status.repairs.current` (instance, action, the uid of the pod it
removes, the revision a Restart brings back) before its pod is touched, so an operator stopped at any
moment finds it and carries on; each repair is an Event and, when it ends, a line of
`status.repairs.history`. The pod goes through InstanceControl.remove_instance (an eviction); the pass
then creates the instance again, with its name, upgrade domain and claims.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from scaleset_operator.api.models import RepairAction
from scaleset_operator.control.context import (
    HISTORY_KEPT,
    Outcome,
    Snapshot,
    batch_ordinals,
    merge_patch,
    timestamp,
)
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.snapshot import instance_state, is_terminating, ready_condition
from scaleset_operator.control.status_updater import StatusUpdater
from scaleset_operator.identity import LABEL_REVISION, instance_name
from scaleset_operator.planning.instances import HealthGate, parse_time
from scaleset_operator.planning.repairs import (
    InstanceHealth,
    RemovePod,
    RepairFinished,
    RepairPolicy,
    RepairRecord,
    RepairResult,
    RepairWait,
    StartRepair,
    plan_repair,
)
from scaleset_operator.planning.scheduled_events import EventType


class RepairControl:
    """Repairs the instances of a ScaleSet that stay unhealthy, one at a time."""

    def __init__(
        self,
        events: EventRecorder,
        instance_control: InstanceControl,
        grace_divisor: float = 1.0,
        status: StatusUpdater | None = None,
    ) -> None:
        self.kube = instance_control.kube
        self.status = status or StatusUpdater(self.kube)
        self.events = events
        self.instances = instance_control
        # Test-only: grace periods pass this many times faster (the API's minimum is 10 minutes).
        self.grace_divisor = grace_divisor

    def reconcile(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> dict[str, Any] | None:
        """One step of the ScaleSet's repairs; returns status.repairs (None while repairs never ran)."""
        spec = snapshot.spec.automatic_repairs
        stored: dict[str, Any] = dict(snapshot.stored_status.get("repairs") or {})
        if not spec.enabled and not stored.get("current"):
            return {"history": stored["history"]} if stored.get("history") else None
        policy = RepairPolicy(
            spec.enabled,
            timedelta(seconds=spec.grace_seconds / self.grace_divisor),
            RepairAction(spec.repair_action),
        )
        plan = plan_repair(
            policy=policy,
            replicas=snapshot.spec.replicas,
            max_unhealthy_instance_percent=snapshot.policy.rolling_upgrade.max_unhealthy_instance_percent,
            instances=self._health(snapshot, now),
            current=_record(stored.get("current")),
            batch_in_flight=_batch_in_flight(snapshot),
            held=_held(snapshot),
            now=now,
        )
        status: dict[str, Any] = {
            "current": stored.get("current"),
            "history": list(stored.get("history") or []),
        }
        if plan.finished is not None:
            status = self._finish(snapshot, status, plan.finished, now)
        step = plan.step
        if isinstance(step, StartRepair):
            pod = snapshot.pods[step.ordinal]
            current = {
                "instance": step.instance,
                "action": str(step.action),
                "startedAt": timestamp(now),
                "reason": step.message,
                "podUID": pod["metadata"].get("uid"),
                "revision": (pod["metadata"].get("labels") or {}).get(LABEL_REVISION),
            }
            status = {**status, "current": current}
            # Recorded before the pod is touched: a restarted operator finishes this repair, no other.
            self.status.record(snapshot, merge_patch(snapshot.stored_status, {"repairs": status}))
            self.events.warning(
                snapshot.scaleset,
                "RepairStarted",
                f"{_verb(step.action)} {step.instance}: {step.message}.",
            )
            record = _record(current)
            assert record is not None
            self._remove(snapshot, record, now, outcome)
        elif isinstance(step, RemovePod):
            self._remove(snapshot, step.record, now, outcome)
        elif isinstance(step, RepairWait):
            if step.until is not None:
                outcome.wait_until(step.until, now)
            elif step.reason is not None:
                outcome.wait_until(None, now)
        held = isinstance(step, RepairWait) and step.reason is not None and not status.get("current")
        reason = str(step.reason) if held and isinstance(step, RepairWait) else None
        message = step.message if held and isinstance(step, RepairWait) else None
        if reason is not None and reason != stored.get("reason"):
            self.events.normal(snapshot.scaleset, reason, f"Automatic repairs wait: {message}.")
        return {**status, "reason": reason, "message": message}

    def _health(self, snapshot: Snapshot, now: datetime) -> list[InstanceHealth]:
        gate = HealthGate.of(snapshot.policy.health_check)
        result = []
        for ordinal in range(snapshot.spec.replicas):
            pod = snapshot.pods.get(ordinal)
            state = instance_state(snapshot.instance_base, ordinal, pod)
            if pod is None:
                result.append(InstanceHealth(ordinal, state.name, None, ready=False, healthy=False))
                continue
            condition = ready_condition(pod)
            not_ready_since = (
                parse_time(condition.get("lastTransitionTime"))
                if condition is not None and condition.get("status") != "True"
                else None
            )
            result.append(
                InstanceHealth(
                    ordinal,
                    state.name,
                    pod["metadata"].get("uid"),
                    ready=state.ready,
                    healthy=gate.is_healthy(state, now),
                    not_ready_since=not_ready_since,
                    updated_at=state.updated_at,
                    terminating=is_terminating(pod),
                )
            )
        return result

    def _remove(self, snapshot: Snapshot, record: RepairRecord, now: datetime, outcome: Outcome) -> None:
        """Tell the instance (when the ScaleSet asks for scheduled events), then take its pod away."""
        pod = snapshot.pods.get(record.ordinal)
        if pod is None or is_terminating(pod) or pod["metadata"].get("uid") != record.pod_uid:
            return
        kind = EventType.REDEPLOY if record.action == RepairAction.REPLACE else EventType.REBOOT
        timing = self.instances.notice(snapshot, {kind: [pod]}, f"repair@{timestamp(record.started_at)}", now)
        if timing is not None and not timing.ready:
            outcome.wait_until(timing.starts_by, now)
            return
        if self.instances.remove_instance(snapshot, pod, outcome, "repairing"):
            del snapshot.pods[record.ordinal]

    def _finish(
        self, snapshot: Snapshot, status: dict[str, Any], finished: RepairFinished, now: datetime
    ) -> dict[str, Any]:
        record = status.get("current") or {}
        line = {
            "instance": record.get("instance") or finished.record.instance,
            "action": record.get("action") or str(finished.record.action),
            "startedAt": record.get("startedAt") or timestamp(finished.record.started_at),
            "finishedAt": timestamp(now),
            "result": str(finished.result),
            "reason": finished.message,
        }
        history = [*status.get("history", []), line][-HISTORY_KEPT:]
        if finished.result == RepairResult.STILL_UNHEALTHY:
            self.events.warning(snapshot.scaleset, "RepairFailed", f"{finished.message}.")
        else:
            self.events.normal(snapshot.scaleset, f"Repair{finished.result}", f"{finished.message}.")
        return {"current": None, "history": history}


def _record(entry: dict[str, Any] | None) -> RepairRecord | None:
    """status.repairs.current read back; None when there is none or it cannot be read."""
    if not entry:
        return None
    name = str(entry.get("instance") or "")
    tail = name.rsplit("-", 1)[-1]
    started = parse_time(entry.get("startedAt"))
    if not tail.isdigit() or started is None:
        return None
    try:
        action = RepairAction(entry.get("action") or RepairAction.REPLACE)
    except ValueError:
        action = RepairAction.REPLACE
    return RepairRecord(name, int(tail), action, started, entry.get("podUID"), entry.get("revision"))


def _batch_in_flight(snapshot: Snapshot) -> bool:
    """An upgrade (rollback, restart) has a batch recorded that has not been seen healthy."""
    upgrade = snapshot.upgrade
    batch = upgrade.get("currentBatch") or {}
    return bool(upgrade.get("locked") and batch and not batch.get("finishedAt"))


def _held(snapshot: Snapshot) -> set[int]:
    """Instances another piece of work owns: the upgrade's batch and the Host maintenance batch."""
    held = (
        set(batch_ordinals(snapshot.upgrade.get("currentBatch") or {}))
        if snapshot.upgrade.get("locked")
        else set()
    )
    host = (snapshot.stored_status.get("hostMaintenance") or {}).get("batch") or []
    names = {instance_name(snapshot.instance_base, o): o for o in range(snapshot.spec.replicas)}
    return held | {names[name] for name in host if name in names}


def _verb(action: RepairAction) -> str:
    return "Replacing" if action == RepairAction.REPLACE else "Restarting"
