"""Imperative actions: the rollback, restart and walk annotations, consumed once, and rollbacks the policy starts.

An action is asked for with an annotation on the ScaleSet (`fleet.scaleset.dev/rollback`,
`fleet.scaleset.dev/restart`, any non-empty value). The operator decides (planning/rollback.py), then
either records the action in `status.upgrade` (guarded by the resourceVersion it read, so two
operators cannot both start one) or refuses it with a Warning Event; either way the outcome goes to
`status.upgrade.lastAction` and the annotation is removed. Status is written before the annotation is
removed: an operator stopped in between finds the action running and only removes the annotation.

Manual mode's walk (`fleet.scaleset.dev/walk`, and a change of spec.walkUpgradeDomain) is recorded
in `status.upgrade.walk` for the update revision it releases (planning/walk.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from scaleset_operator.control.context import (
    HISTORY_KEPT,
    Snapshot,
    timestamp,
    timestamp_precise,
)
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.kube import ApiError, Kube, fleet_path
from scaleset_operator.control.snapshot import instance_state
from scaleset_operator.control.status_updater import StatusUpdater
from scaleset_operator.identity import (
    ANNOTATION_RESTART,
    ANNOTATION_ROLLBACK,
    ANNOTATION_WALK,
    LABEL_REVISION,
)
from scaleset_operator.planning.instances import HealthGate, InstanceState
from scaleset_operator.planning.rollback import (
    Accepted,
    Action,
    Decision,
    Lock,
    Refusal,
    Refused,
    decide_restart,
    decide_rollback,
)
from scaleset_operator.planning.staged import is_staged
from scaleset_operator.planning.walk import Walk, WalkAccepted, decide_walk, observe_spec

log = logging.getLogger(__name__)

REQUESTED = "Requested"
WALK = "Walk"


def lock_of(upgrade: dict[str, Any]) -> Lock:
    action = None
    if upgrade.get("locked"):
        if upgrade.get("rollback"):
            action = Action.ROLLBACK
        elif upgrade.get("restart"):
            action = Action.RESTART
    return Lock(
        locked=bool(upgrade.get("locked")),
        action=action,
        from_revision=upgrade.get("fromRevision"),
        to_revision=upgrade.get("toRevision"),
    )


def instances_of(snapshot: Snapshot) -> list[InstanceState]:
    return [
        instance_state(snapshot.instance_base, o, snapshot.pods.get(o)) for o in range(snapshot.spec.replicas)
    ]


class ImperativeActions:
    """Reads the action annotations of a ScaleSet and starts, or refuses, what they ask for."""

    def __init__(self, kube: Kube, events: EventRecorder, status: StatusUpdater | None = None) -> None:
        self.kube = kube
        self.events = events
        self.status = status or StatusUpdater(kube)

    def consume(self, snapshot: Snapshot, now: datetime) -> None:
        annotations = snapshot.scaleset["metadata"].get("annotations") or {}
        if annotations.get(ANNOTATION_ROLLBACK):
            self._rollback_asked(snapshot, now)
            self._remove_annotation(snapshot, ANNOTATION_ROLLBACK)
        if annotations.get(ANNOTATION_RESTART):
            self._restart_asked(snapshot, now)
            self._remove_annotation(snapshot, ANNOTATION_RESTART)

    # ------------------------------------------------------------------ rollback

    def _rollback_asked(self, snapshot: Snapshot, now: datetime) -> None:
        rollback = snapshot.upgrade.get("rollback")
        if snapshot.upgrade.get("locked") and rollback and rollback.get("reason") == REQUESTED:
            return  # asked for and started already: an earlier pass stopped before removing the annotation
        upgrade = dict(snapshot.upgrade)
        decision = self.decide_rollback(snapshot, now)
        if isinstance(decision, Accepted):
            self.start_rollback(snapshot, upgrade, REQUESTED, decision.message, now)
        else:
            self._refuse(snapshot, upgrade, Action.ROLLBACK, decision, now)

    def decide_rollback(self, snapshot: Snapshot, now: datetime) -> Decision:
        if is_staged(snapshot.policy):
            return Refused(
                Refusal.STAGED_MODE,
                "In Staged mode an upgrade never changes the instances that serve, so there is nothing to "
                f"roll back: swap back (scaleset swap-back {snapshot.name}) while the previous set is kept, "
                "or apply the former template.",
            )
        lock = lock_of(snapshot.upgrade)
        return decide_rollback(
            lock,
            snapshot.spec.replicas,
            instances_of(snapshot),
            snapshot.template_of(lock.from_revision),
            snapshot.template_of(lock.to_revision),
            HealthGate.of(snapshot.policy.health_check),
            now,
        )

    def start_rollback(
        self,
        snapshot: Snapshot,
        upgrade: dict[str, Any],
        reason: str,
        message: str,
        now: datetime,
        only: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Record the rollback (the upgrade stays locked) and return the new status.upgrade.

        `only` names the instances that go back (rollbackFailedInstancesOnPolicyBreach: the failed
        ones); None rolls back every updated instance.
        """
        failed, target = upgrade.get("toRevision"), upgrade.get("fromRevision")
        if only is not None:
            message = f"Rolling back the failed instances {', '.join(only)} from {failed} to {target}."
        upgrade = {
            **upgrade,
            "phase": "RollingBack",
            "locked": True,
            "rollbackAllowed": False,
            "currentBatch": None,
            "currentUpgradeDomain": None,
            "rollback": {
                "reason": reason,
                "startedAt": timestamp(now),
                "fromRevision": failed,
                "toRevision": target,
                **({"instances": list(only)} if only is not None else {}),
            },
            "reason": "RollbackStarted",
            "message": message,
            "lastAction": _last_action(Action.ROLLBACK, "Accepted", reason, message, now),
        }
        self.write_upgrade(snapshot, upgrade)
        why = "as asked" if reason == REQUESTED else f"by the policy after {reason}"
        self.events.warning(snapshot.scaleset, "RollbackStarted", f"{message} Started {why}.")
        return upgrade

    # ------------------------------------------------------------------ restart

    def _restart_asked(self, snapshot: Snapshot, now: datetime) -> None:
        if snapshot.upgrade.get("locked") and snapshot.upgrade.get("restart"):
            return  # started already
        upgrade = dict(snapshot.upgrade)
        decision = decide_restart(lock_of(upgrade))
        if isinstance(decision, Refused):
            self._refuse(snapshot, upgrade, Action.RESTART, decision, now)
            return
        upgrade = {
            **upgrade,
            "phase": "Restarting",
            "locked": True,
            "rollbackAllowed": False,
            "currentBatch": None,
            "currentUpgradeDomain": None,
            "startedAt": timestamp(now),
            "fromRevision": snapshot.current_revision,
            "toRevision": snapshot.current_revision,
            "restart": {"requestedAt": timestamp_precise(now)},
            "reason": "RestartStarted",
            "message": decision.message,
            "lastAction": _last_action(Action.RESTART, "Accepted", REQUESTED, decision.message, now),
        }
        self.write_upgrade(snapshot, upgrade)
        self.events.normal(snapshot.scaleset, "RestartStarted", decision.message)

    # ------------------------------------------------------------------ walk

    def consume_walk(self, snapshot: Snapshot, now: datetime) -> None:
        """Record a walk of the update revision: a change of spec.walkUpgradeDomain, then the walk
        annotation (answered in status.upgrade.lastAction, then removed). Call it once the pass knows
        which revision instances go to (after a rollback's target is chosen)."""
        upgrade = dict(snapshot.upgrade)
        walk = Walk.from_status(upgrade.get("walk"))
        observed = observe_spec(walk, snapshot.spec.walk_upgrade_domain, snapshot.update_revision, now)
        request = (snapshot.scaleset["metadata"].get("annotations") or {}).get(ANNOTATION_WALK)
        if observed is None and request is None:
            return
        if observed is not None:
            walk = observed
            upgrade["walk"] = observed.to_status()
        decision = None
        if request is not None:
            decision = decide_walk(
                str(request),
                mode=snapshot.policy.mode,
                upgrade_domain_count=snapshot.spec.upgrade_domain_count,
                update_revision=snapshot.update_revision,
                current_revision=snapshot.current_revision,
                action=lock_of(upgrade).action,
                walk=walk,
                now=now,
            )
            if isinstance(decision, WalkAccepted):
                upgrade["walk"] = decision.walk.to_status()
                result, reason = "Accepted", REQUESTED
            else:
                result, reason = "Refused", str(decision.reason)
            upgrade["lastAction"] = _last_action(WALK, result, reason, decision.message, now)
        self.write_upgrade(snapshot, upgrade)
        if decision is None:
            return
        if isinstance(decision, WalkAccepted):
            self.events.normal(snapshot.scaleset, "Walked", decision.message)
        else:
            self.events.warning(snapshot.scaleset, str(decision.reason), decision.message)
        self._remove_annotation(snapshot, ANNOTATION_WALK)

    # ------------------------------------------------------------------ finishing

    def finish_rollback(self, snapshot: Snapshot, upgrade: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Every instance is back on the revision the upgrade came from: the upgrade failed, and the
        revision rolled back is remembered so that a template still asking for it is not tried again."""
        rollback = upgrade.get("rollback") or {}
        failed, target = rollback.get("fromRevision"), rollback.get("toRevision")
        history = [
            *(upgrade.get("history") or []),
            {
                "fromRevision": upgrade.get("fromRevision"),
                "toRevision": failed,
                "startedAt": upgrade.get("startedAt"),
                "finishedAt": timestamp(now),
                "result": "RolledBack",
            },
        ]
        only = rollback.get("instances")
        kept = [
            str(pod["metadata"]["name"])
            for _, pod in sorted(snapshot.pods.items())
            if _revision(pod) == failed
        ]
        message = rolled_back_message(failed, target, kept)
        done = f"{', '.join(only)} run {target} again" if only else f"Every instance runs {target} again"
        self.events.normal(snapshot.scaleset, "RollbackCompleted", f"{done}.")
        return {
            "phase": "Failed",
            "locked": False,
            "history": history[-HISTORY_KEPT:],
            "fromRevision": upgrade.get("fromRevision"),
            "toRevision": failed,
            "startedAt": upgrade.get("startedAt"),
            "rolledBackRevision": failed,
            "reason": "RolledBack",
            "message": message,
            "lastAction": upgrade.get("lastAction"),
        }

    def finish_restart(self, snapshot: Snapshot, upgrade: dict[str, Any], now: datetime) -> dict[str, Any]:
        history = [
            *(upgrade.get("history") or []),
            {
                "fromRevision": upgrade.get("fromRevision"),
                "toRevision": upgrade.get("toRevision") or snapshot.current_revision,
                "startedAt": upgrade.get("startedAt"),
                "finishedAt": timestamp(now),
                "result": "Restarted",
            },
        ]
        self.events.normal(snapshot.scaleset, "RestartCompleted", "Every instance has been restarted.")
        return {
            "phase": "Completed",
            "locked": False,
            "history": history[-HISTORY_KEPT:],
            "fromRevision": upgrade.get("fromRevision"),
            "toRevision": upgrade.get("toRevision"),
            "startedAt": upgrade.get("startedAt"),
            "lastAction": upgrade.get("lastAction"),
        }

    # ------------------------------------------------------------------ writing

    def _refuse(
        self, snapshot: Snapshot, upgrade: dict[str, Any], action: Action, decision: Refused, now: datetime
    ) -> None:
        upgrade = {
            **upgrade,
            "lastAction": _last_action(action, "Refused", decision.reason, decision.message, now),
        }
        self.write_upgrade(snapshot, upgrade)
        self.events.warning(snapshot.scaleset, str(decision.reason), decision.message)

    def write_upgrade(self, snapshot: Snapshot, upgrade: dict[str, Any]) -> None:
        """Write status.upgrade whole, only if nobody changed the ScaleSet since this pass read it."""
        self.status.record(snapshot, {"upgrade": upgrade})

    def _remove_annotation(self, snapshot: Snapshot, key: str) -> None:
        remove_annotation(self.kube, snapshot, key)


def remove_annotation(kube: Kube, snapshot: Snapshot, key: str) -> None:
    """An action annotation is consumed once: removed after its answer is written."""
    path = fleet_path("scalesets", snapshot.namespace, snapshot.name)
    try:
        updated = kube.patch(path, {"metadata": {"annotations": {key: None}}})
    except ApiError as error:
        if error.status == 404:
            return
        raise
    snapshot.scaleset["metadata"] = updated["metadata"]


def rolled_back_message(failed: str | None, target: str | None, kept: Sequence[str] = ()) -> str:
    """Why the ScaleSet holds after a rollback; `kept` are the instances left on the revision rolled back
    (a rollback of the failed instances only keeps the healthy upgraded ones there)."""
    runs = (
        f"the failed instances run {target} again and {', '.join(kept)} stay on {failed}"
        if kept
        else f"every instance runs {target}"
    )
    return (
        f"The upgrade to {failed} was rolled back and {runs}; {failed} is not tried again while "
        "spec.template asks for it: change spec.template to roll out a new revision."
    )


def _revision(pod: dict[str, Any]) -> str | None:
    revision = (pod["metadata"].get("labels") or {}).get(LABEL_REVISION)
    return None if revision is None else str(revision)


def _last_action(
    action: Action | str, result: str, reason: str, message: str, now: datetime
) -> dict[str, str]:
    return {
        "action": str(action),
        "result": result,
        "reason": reason,
        "message": message,
        "at": timestamp(now),
    }
