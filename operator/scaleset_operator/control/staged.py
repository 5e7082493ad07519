"""The actor of Staged mode: builds the second set, swaps the Services to it, keeps and removes the old set.

It decides with `planning/staged.py` and writes in this order, so that an operator killed between any
two writes carries on: status.staged first (guarded by the resourceVersion read; the recorded swap is
the commitment), then the instances (through `InstanceControl`), then the Services, one update each,
then status.staged again with the new production slot. Before any second set exists, the production
instances carry their slot label and every Service that selects them has the slot key in its
selector, so a Service never selects both sets. The swap and swap-back annotations are answered in
status.upgrade.lastAction, written with the record before the annotation is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from scaleset_operator.control.actions import remove_annotation
from scaleset_operator.control.context import (
    HISTORY_KEPT,
    Conflict,
    Outcome,
    Snapshot,
    merge_patch,
    timestamp,
)
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.kube import ApiError, Kube, core_path
from scaleset_operator.control.reader import Reader
from scaleset_operator.control.snapshot import instance_state
from scaleset_operator.control.status_updater import StatusUpdater
from scaleset_operator.identity import ANNOTATION_SWAP, ANNOTATION_SWAP_BACK, slot_base, slot_of
from scaleset_operator.planning.batches import Complete, Step, StepReason, Stop
from scaleset_operator.planning.maintenance import Deferred, GateDecision
from scaleset_operator.planning.staged import (
    StagedPlan,
    StagedRecord,
    Swap,
    finish_swap,
    is_staged,
    plan_staged,
    selector_patch,
    selects_instances,
)

log = logging.getLogger(__name__)

SWAP_BACK = "SwapBack"
SWAP = "Swap"
# The phase of status.upgrade while a staged upgrade waits for one of these, rather than Staging.
_PHASE_OF_WAIT: dict[str | None, str] = {
    StepReason.READY_TO_SWAP: "ReadyToSwap",
    StepReason.WAITING_FOR_MAINTENANCE_WINDOW: "WaitingForMaintenanceWindow",
    StepReason.PAUSED: "Paused",
}


def production_slot(status: dict[str, Any], staged_mode: bool) -> str | None:
    """The slot whose pods are the instances a pass works on; None for a ScaleSet never staged."""
    recorded = (status.get("staged") or {}).get("production")
    return str(recorded) if recorded else ("blue" if staged_mode else None)


def partition(
    pods: list[dict[str, Any]], slot: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Production pods and the other slot's pods; with no slot every pod is production."""
    if slot is None:
        return pods, []
    return [p for p in pods if slot_of(p) == slot], [p for p in pods if slot_of(p) != slot]


class StagedControl:
    """Carries out Staged mode for one ScaleSet per pass; `reconcile` returns the step for the
    conditions in Staged mode, None otherwise (then the rolling planner runs)."""

    def __init__(
        self,
        kube: Kube,
        events: EventRecorder,
        instances: InstanceControl,
        status: StatusUpdater | None = None,
    ) -> None:
        self.kube = kube
        self.reader = Reader(kube)
        self.events = events
        self.instances = instances
        self.status = status or StatusUpdater(kube)

    def reconcile(
        self,
        snapshot: Snapshot,
        now: datetime,
        outcome: Outcome,
        gate: Callable[[], GateDecision | None] = lambda: None,
    ) -> Step | None:
        """`gate` answers whether the automatic work the staged revision carries may start now."""
        staged_mode = is_staged(snapshot.policy)
        stored = snapshot.stored_status.get("staged")
        annotations = snapshot.scaleset["metadata"].get("annotations") or {}
        asked = bool(annotations.get(ANNOTATION_SWAP_BACK))
        swap_asked = bool(annotations.get(ANNOTATION_SWAP))
        if not staged_mode and not stored:
            if asked:
                self._answer_swap_back(
                    snapshot,
                    "There is no previous set to swap back to: this ScaleSet "
                    "has never been upgraded in Staged mode.",
                    now,
                )
            if swap_asked:
                self._answer(
                    snapshot,
                    SWAP,
                    ANNOTATION_SWAP,
                    "There is nothing to swap to: the UpgradePolicy is not in Staged mode.",
                    now,
                )
            return None
        record = StagedRecord.from_status(stored, snapshot.current_revision)
        self.instances.label_slot(snapshot)
        if record.swap is None:
            self._select(snapshot, record.production, pin=True)  # Services without the slot key
        if staged_mode and snapshot.upgrade.get("locked") and snapshot.upgrade.get("restart"):
            if snapshot.template_revision == record.production_revision and not asked:
                return None  # a restart of the production instances runs as in every mode
            self._supersede_restart(snapshot)
        standby_base = slot_base(snapshot.name, record.standby)
        standby = {o: instance_state(standby_base, o, pod) for o, pod in snapshot.standby.items()}
        upgrading = staged_mode and snapshot.template_revision != record.production_revision
        decision = gate() if upgrading else None
        plan = plan_staged(
            record=record,
            policy=snapshot.policy,
            template_revision=snapshot.template_revision,
            replicas=snapshot.spec.replicas,
            standby=standby,
            now=now,
            swap_back_requested=asked,
            quota_free=self._quota_free(snapshot) if upgrading else None,
            paused=snapshot.spec.paused,
            swap_requested=swap_asked and staged_mode,
            gate=decision,
        )
        upgrade = self._upgrade(snapshot, record, plan, now) if staged_mode else dict(snapshot.upgrade)
        if asked:
            upgrade["lastAction"] = _last_action(plan, now)
        if swap_asked:
            upgrade["lastAction"] = _swap_answer(plan, staged_mode, now)
        patch = merge_patch(snapshot.stored_status, {"staged": plan.record.to_status(), "upgrade": upgrade})
        if patch:
            self.status.record(snapshot, patch)
        if asked:
            self._answered(snapshot, plan)
        if swap_asked:
            if plan.swap_refusal is not None or not staged_mode:
                self.events.warning(snapshot.scaleset, "SwapRefused", upgrade["lastAction"]["message"])
            remove_annotation(self.kube, snapshot, ANNOTATION_SWAP)
        if isinstance(decision, Deferred) and (plan.swap is not None or plan.create):
            self.events.warning(snapshot.scaleset, decision.reason, decision.message)
        self.instances.remove_standby(snapshot, plan.remove, outcome)
        if plan.create and plan.record.staging is not None:
            self.instances.create_standby(
                snapshot, str(plan.record.standby), plan.record.staging.revision, plan.create, now, outcome
            )
        if plan.swap is not None:
            self._swap(snapshot, plan.record, plan.swap, upgrade, now, outcome)
        elif plan.record.staging is None and not plan.remove:
            self.instances.release_standby_claims(snapshot, str(plan.record.standby))
        self._requeue(snapshot, plan, now, outcome)
        if not staged_mode:
            return None
        outcome.step = type(plan.step).__name__
        return plan.step

    # ------------------------------------------------------------------ the swap

    def _swap(
        self,
        snapshot: Snapshot,
        record: StagedRecord,
        swap: Swap,
        upgrade: dict[str, Any],
        now: datetime,
        outcome: Outcome,
    ) -> None:
        """Move every Service to the slot of `swap` (one update each), then record it as production."""
        moved = self._select(snapshot, swap.to_slot)
        keep = timedelta(seconds=snapshot.policy.staged.keep_previous_seconds)
        finished = finish_swap(record, swap, moved, now, keep)
        history = [
            *(upgrade.get("history") or []),
            {
                "fromRevision": record.production_revision,
                "toRevision": swap.revision,
                "startedAt": upgrade.get("startedAt") or timestamp(now),
                "finishedAt": timestamp(now),
                "result": "SwappedBack" if swap.back else "Swapped",
            },
        ]
        done = {
            **upgrade,
            "phase": "Completed",
            "locked": False,
            "currentBatch": None,
            "fromRevision": record.production_revision,
            "toRevision": swap.revision,
            "reason": None,
            "message": None,
            "history": history[-HISTORY_KEPT:],
        }
        self.status.record(
            snapshot, {"staged": finished.to_status(), "currentRevision": swap.revision, "upgrade": done}
        )
        what = "back " if swap.back else ""
        services = ", ".join(sorted(moved)) or "no Service selects the instances"
        self.events.normal(
            snapshot.scaleset,
            "Swapped",
            f"Swapped {what}to slot {swap.to_slot} ({swap.revision}): {services}; slot {record.production} "
            f"is kept until {timestamp(now + keep)} for a swap back.",
        )
        # The rest of the pass works on the new production set.
        snapshot.slot = str(swap.to_slot)
        snapshot.pods, snapshot.standby = snapshot.standby, snapshot.pods
        snapshot.current_revision = swap.revision
        outcome.wait_until(now + keep, now)

    def _select(self, snapshot: Snapshot, slot: Any, pin: bool = False) -> list[str]:
        """Make every Service that selects the ScaleSet's instances select `slot` (with `pin`, only those
        whose slot key is missing or names a slot without instances); returns their names."""
        instances = [*snapshot.pods.values(), *snapshot.standby.values()]
        labels = [p["metadata"].get("labels") or {} for p in instances]
        if not labels:
            return []
        occupied = {slot_of(p) for p in instances}
        names = []
        services = snapshot.services if snapshot.services is not None else {}
        for service in list(services.values()):
            selector = (service.get("spec") or {}).get("selector") or {}
            if not selects_instances(selector, labels):
                continue
            name = service["metadata"]["name"]
            names.append(name)
            patch = selector_patch(selector, slot, pin=pin, occupied=occupied)
            if patch is None:
                continue
            # Only the Service as read: one changed since (a user, another writer) ends the pass.
            patch = {**patch, "metadata": {"resourceVersion": service["metadata"].get("resourceVersion")}}
            try:
                # What the API server returned is the Service a later change in this pass is made to.
                services[name] = self.kube.patch(core_path("services", snapshot.namespace, name), patch)
            except ApiError as error:
                if error.status == 409:
                    raise Conflict(f"Service {snapshot.namespace}/{name}: {error}") from None
                if error.status != 404:
                    raise
                del services[name]  # gone since the pass read it
        return names

    # ------------------------------------------------------------------ status.upgrade and answers

    def _supersede_restart(self, snapshot: Snapshot) -> None:
        """A new template (or a swap back) during a restart wins, as a new template does in Rolling mode."""
        self.events.normal(
            snapshot.scaleset,
            "RestartSuperseded",
            "spec.template changed during the restart; staging it instead."
            if snapshot.template_revision != snapshot.current_revision
            else "A swap back was asked for during the restart; swapping instead.",
        )
        upgrade = {**snapshot.upgrade, "restart": None, "locked": False, "currentBatch": None}
        snapshot.scaleset.setdefault("status", {})["upgrade"] = upgrade

    def _upgrade(
        self, snapshot: Snapshot, record: StagedRecord, plan: StagedPlan, now: datetime
    ) -> dict[str, Any]:
        """status.upgrade in Staged mode: locked while a set is staged or swapped, with the step's reason."""
        upgrade = dict(snapshot.upgrade)
        step = plan.step
        reason, message = getattr(step, "reason", None), getattr(step, "message", None)
        target = (
            plan.swap.revision
            if plan.swap
            else (plan.record.staging.revision if plan.record.staging else None)
        )
        if reason in (StepReason.STAGED_CAPACITY, *_PHASE_OF_WAIT) and target is None:
            target = snapshot.template_revision  # an upgrade waits to start: it is locked, not idle
        if target is None:
            if upgrade.get("locked"):
                upgrade.update(locked=False, phase="Completed")
            if isinstance(step, Complete):
                reason = message = None
        else:
            if upgrade.get("toRevision") != target or not upgrade.get("locked"):
                upgrade["startedAt"] = timestamp(now)
            if plan.swap is None and (upgrade.get("toRevision") != target or not upgrade.get("locked")):
                self.events.normal(
                    snapshot.scaleset,
                    "UpgradeStarted",
                    f"Staging {target} in slot {plan.record.standby} beside production "
                    f"({record.production}, {record.production_revision}).",
                )
            upgrade.update(
                locked=True,
                phase="Swapping" if plan.swap else _PHASE_OF_WAIT.get(reason, "Staging"),
                fromRevision=record.production_revision,
                toRevision=target,
                currentBatch=None,
                currentUpgradeDomain=None,
            )
        if reason is not None and upgrade.get("reason") != reason and not plan.swap:
            post = self.events.warning if isinstance(step, Stop) else self.events.normal
            post(snapshot.scaleset, str(reason), str(message))
        upgrade.update(reason=str(reason) if reason else None, message=message)
        return upgrade

    def _answered(self, snapshot: Snapshot, plan: StagedPlan) -> None:
        if plan.refusal is not None:
            self.events.warning(snapshot.scaleset, "SwapBackRefused", plan.refusal)
        remove_annotation(self.kube, snapshot, ANNOTATION_SWAP_BACK)

    def _answer_swap_back(self, snapshot: Snapshot, message: str, now: datetime) -> None:
        self._answer(snapshot, SWAP_BACK, ANNOTATION_SWAP_BACK, message, now)

    def _answer(self, snapshot: Snapshot, action: str, annotation: str, message: str, now: datetime) -> None:
        """Refuse an action asked for by annotation: the answer in status, a Warning, the annotation gone."""
        reason = f"{action}Refused"
        upgrade = {**snapshot.upgrade, "lastAction": _answer("Refused", reason, message, now, action)}
        self.status.record(snapshot, {"upgrade": upgrade})
        self.events.warning(snapshot.scaleset, reason, message)
        remove_annotation(self.kube, snapshot, annotation)

    # ------------------------------------------------------------------ capacity and timing

    def _quota_free(self, snapshot: Snapshot) -> int | None:
        """How many more pods the namespace's ResourceQuotas allow; None when none limits pods."""
        free = None
        for quota in self.reader.resource_quotas(snapshot.namespace):
            status = quota.get("status") or {}
            hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
            used = status.get("used") or {}
            for key in ("pods", "count/pods"):
                if key in hard:
                    left = int(hard[key]) - int(used.get(key) or 0)
                    free = left if free is None else min(free, left)
        return None if free is None else max(0, free)

    def _requeue(self, snapshot: Snapshot, plan: StagedPlan, now: datetime, outcome: Outcome) -> None:
        if plan.create or plan.remove or plan.swap:
            outcome.wait_until(None, now)
        until = getattr(plan.step, "until", None)
        if until is not None:
            outcome.wait_until(until, now)
        previous = plan.record.previous if plan.swap is None else None
        if previous is not None and previous.kept_until is not None:
            outcome.wait_until(previous.kept_until, now)


def _last_action(plan: StagedPlan, now: datetime) -> dict[str, Any]:
    if plan.refusal is not None:
        return _answer("Refused", "SwapBackRefused", plan.refusal, now)
    swap = plan.swap
    message = f"Swapping back to slot {swap.to_slot} ({swap.revision})." if swap else "Swapped back already."
    return _answer("Accepted", "Requested", message, now)


def _swap_answer(plan: StagedPlan, staged_mode: bool, now: datetime) -> dict[str, Any]:
    if not staged_mode:
        message = "There is nothing to swap to: the UpgradePolicy is not in Staged mode."
        return _answer("Refused", "SwapRefused", message, now, SWAP)
    if plan.swap_refusal is not None:
        return _answer("Refused", "SwapRefused", plan.swap_refusal, now, SWAP)
    swap = plan.swap
    message = (
        f"Swapping every Service to slot {swap.to_slot} ({swap.revision})." if swap else "Swapped already."
    )
    return _answer("Accepted", "Requested", message, now, SWAP)


def _answer(result: str, reason: str, message: str, now: datetime, action: str = SWAP_BACK) -> dict[str, Any]:
    return {"action": action, "result": result, "reason": reason, "message": message, "at": timestamp(now)}
