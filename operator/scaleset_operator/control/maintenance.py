"""Maintenance in the reconcile pass: the windows that apply, moving instances off nodes under maintenance,
and telling instances of a node's freeze.

The decisions are in planning/maintenance.py (assignment, the gate, deferral) and
planning/host_maintenance.py (which instances leave which nodes, one batch at a time; which are told
of a freeze); this actor takes the MaintenanceConfigurations and the namespace's labels from the
snapshot (control/reader.py read them, and the nodes), records the Host batch in `status.hostMaintenance` before touching any instance (so a
restarted operator finishes it), and deletes the batch's pods so that the pass creates them again on
other nodes. A freeze moves nothing: each instance's agreement is an annotation on its pod, so the
node is labelled `ready` only when every instance on it, of every ScaleSet, has agreed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scaleset_operator.api.models import MaintenanceConfiguration, MaintenanceScope
from scaleset_operator.control.context import Conflict, Outcome, Snapshot, timestamp
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.kube import JSON_PATCH, ApiError, Kube, core_path
from scaleset_operator.control.reader import Reader
from scaleset_operator.control.scheduled_events import event_id, events_of
from scaleset_operator.control.snapshot import instance_state, is_terminating
from scaleset_operator.control.status_updater import StatusUpdater
from scaleset_operator.identity import ANNOTATION_FROZEN_ON
from scaleset_operator.planning.batches import batch_size
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.host_maintenance import (
    MAINTENANCE_FREEZE,
    MAINTENANCE_LABEL,
    MAINTENANCE_READY,
    FreezeGate,
    FreezePlan,
    FreezingInstance,
    NodeState,
    PlacedInstance,
    freeze_may_proceed,
    gate_freezes,
    plan_freeze,
    plan_host_maintenance,
)
from scaleset_operator.planning.instances import HealthGate, parse_time
from scaleset_operator.planning.maintenance import (
    AssignedMaintenance,
    Closed,
    Deferred,
    assign,
    gate_batch,
    status_summary,
)
from scaleset_operator.planning.scheduled_events import EventType

log = logging.getLogger(__name__)


class MaintenanceActor:
    """Reads maintenance configurations and nodes for one ScaleSet and carries out Host maintenance."""

    def __init__(
        self,
        kube: Kube,
        events: EventRecorder,
        instance_control: InstanceControl,
        status: StatusUpdater | None = None,
    ) -> None:
        self.kube = kube
        self.reader = Reader(kube)
        self.events = events
        self.instance_control = instance_control
        self.status = status or StatusUpdater(kube)

    # ------------------------------------------------------------------ windows

    def assigned(self, snapshot: Snapshot) -> AssignedMaintenance:
        """The MaintenanceConfigurations that select this ScaleSet, united by scope."""
        configurations = []
        for raw in snapshot.maintenance_configurations:
            try:
                configurations.append(MaintenanceConfiguration.model_validate(raw))
            except ValidationError as error:  # the API server validated it; a newer field is not fatal
                log.warning("MaintenanceConfiguration %s ignored: %s", raw["metadata"].get("name"), error)
        result = assign(
            configurations, snapshot.scaleset["metadata"].get("labels") or {}, snapshot.namespace_labels
        )
        known = set(((snapshot.scaleset.get("status") or {}).get("maintenance") or {}).get("problems") or [])
        for problem in result.problems:
            if problem not in known:
                self.events.warning(snapshot.scaleset, "InvalidMaintenanceWindow", problem)
        return result

    @staticmethod
    def summary(assigned: AssignedMaintenance, now: datetime) -> dict[str, Any] | None:
        """status.maintenance: the configurations that apply, each scope's window, and their problems."""
        summary = status_summary(assigned, now)
        if summary is None:
            return None
        return summary.model_dump(by_alias=True, exclude_none=True)

    # ------------------------------------------------------------------ Host

    def host(
        self, snapshot: Snapshot, assigned: AssignedMaintenance, now: datetime, outcome: Outcome
    ) -> dict[str, Any] | None:
        """One step of Host maintenance for this ScaleSet: node freezes, then moves off nodes.

        Returns status.hostMaintenance (None when no instance is on such a node, none is moving and no
        freeze waits). A freeze moves nothing and is answered whatever else runs (see `freeze`).
        """
        stored: dict[str, Any] = (snapshot.scaleset.get("status") or {}).get("hostMaintenance") or {}
        listed = list(snapshot.nodes)
        nodes = [
            NodeState(
                node["metadata"]["name"],
                cordoned=bool((node.get("spec") or {}).get("unschedulable")),
                maintenance=(node["metadata"].get("labels") or {}).get(MAINTENANCE_LABEL),
            )
            for node in listed
        ]
        freeze = self.freeze(snapshot, nodes, now, outcome, assigned, stored.get("freeze"))
        record = self._moves(snapshot, nodes, listed, assigned, now, outcome)
        if freeze is None:
            if record is not None:
                record.pop("freeze", None)
            return record
        return {**(record or {}), "freeze": freeze}

    def _moves(
        self,
        snapshot: Snapshot,
        nodes: list[NodeState],
        listed: list[dict[str, Any]],
        assigned: AssignedMaintenance,
        now: datetime,
        outcome: Outcome,
    ) -> dict[str, Any] | None:
        """Moving this ScaleSet's instances off nodes under maintenance, one batch of the policy at a time.

        Moves run only between upgrades: an upgrade, rollback or restart holds the instances first.
        """
        record: dict[str, Any] = dict((snapshot.scaleset.get("status") or {}).get("hostMaintenance") or {})
        if snapshot.upgrade.get("locked"):
            return record or None
        affected = {node.name for node in nodes if node.under_maintenance}
        count = snapshot.spec.upgrade_domain_count
        placed = [
            PlacedInstance(
                pod["metadata"]["name"],
                ordinal,
                upgrade_domain_of(ordinal, count),
                (pod.get("spec") or {}).get("nodeName"),
            )
            for ordinal, pod in sorted(snapshot.pods.items())
            if ordinal < snapshot.spec.replicas and not is_terminating(pod)
        ]
        gate = HealthGate.of(snapshot.policy.health_check)
        moving = [
            name for name in record.get("batch") or [] if not self._moved(snapshot, name, affected, gate, now)
        ]
        # A recorded move whose pod is still on its node (its eviction was refused, or the operator
        # stopped before it) is tried again.
        for pod in [p for p in snapshot.pods.values() if p["metadata"]["name"] in moving]:
            if not is_terminating(pod) and (pod.get("spec") or {}).get("nodeName") in affected:
                self.instance_control.remove_instance(snapshot, pod, outcome, "redeploying")
        plan = plan_host_maintenance(
            nodes, placed, batch_size(snapshot.spec.replicas, snapshot.policy), moving
        )
        self._release_nodes(plan.nodes_ready, {n["metadata"]["name"]: n["metadata"] for n in listed})
        if not plan.waiting and not moving:
            return None
        pending_since = parse_time(record.get("pendingSince")) or now
        record = {
            **record,
            "pendingSince": record.get("pendingSince") or timestamp(now),
            "waiting": list(plan.waiting),
        }
        if not plan.redeploy:
            return record
        decision = gate_batch(assigned, MaintenanceScope.HOST, now, pending_since)
        if isinstance(decision, Closed):
            record.update(reason=decision.reason, message=decision.message)
            if decision.next_start is not None:
                outcome.wait_until(decision.next_start, now)
            return record
        if isinstance(decision, Deferred) and record.get("reason") != decision.reason:
            self.events.warning(snapshot.scaleset, decision.reason, decision.message)
        pods = [p for p in snapshot.pods.values() if p["metadata"]["name"] in plan.redeploy]
        timing = self.instance_control.notice(snapshot, {EventType.REDEPLOY: pods}, "host-maintenance", now)
        if timing is not None and not timing.ready:
            record.update(
                reason="WaitingForApproval",
                message=f"{', '.join(timing.waiting_for)} told of a Redeploy; it starts when each approves it, "
                f"or at {timing.starts_by.isoformat() if timing.starts_by else 'once every instance has been told'}",
            )
            outcome.wait_until(timing.starts_by, now)
            return record
        record.update(
            batch=list(plan.redeploy),
            startedAt=timestamp(now),
            reason=decision.reason,
            message=f"Moving {', '.join(plan.redeploy)} off nodes under maintenance.",
        )
        # The batch is recorded before any of its pods goes: a restarted operator waits for it.
        self.status.record(snapshot, {"hostMaintenance": record})
        self.events.normal(snapshot.scaleset, "HostMaintenance", record["message"])
        removed = [
            pod
            for pod in pods
            if self.instance_control.remove_instance(snapshot, pod, outcome, "redeploying")
        ]
        # The pass's status counts them as gone: a Ready written now must not include them.
        for ordinal in [o for o, pod in snapshot.pods.items() if pod in removed]:
            del snapshot.pods[ordinal]
        outcome.wait_until(None, now)
        return record

    # ------------------------------------------------------------------ freeze

    def freeze(
        self,
        snapshot: Snapshot,
        nodes: list[NodeState],
        now: datetime,
        outcome: Outcome,
        assigned: AssignedMaintenance | None = None,
        stored: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Tell the instances on nodes labelled `freeze` (a Freeze scheduled event), mark each that agreed
        (approved, or its NotBefore passed) and label a node `ready` once every instance on it has; when
        the node tool takes the label away, the events and marks go.

        A freeze not yet told to any instance waits for a Host window when one applies, up to its
        maxDeferral; returns status.hostMaintenance.freeze while one waits (`stored` is the last one).
        """
        own = {
            pod["metadata"]["name"]: pod
            for pod in snapshot.pods.values()
            if not is_terminating(pod) and (pod.get("spec") or {}).get("nodeName")
        }
        plan = plan_freeze(
            nodes,
            [
                FreezingInstance(name, pod["spec"]["nodeName"], _frozen_on(pod))
                for name, pod in sorted(own.items())
            ],
        )
        for node, names in plan.finished.items():
            for name in names:
                self.instance_control.notices.finish(own[name], EventType.FREEZE, _freeze_work(node))
                self._mark_frozen(own[name], None)
            self.events.normal(
                snapshot.scaleset,
                "HostFreezeFinished",
                f"The freeze of node {node} is over for {', '.join(names)}.",
            )
        gate = self._gate_freezes(snapshot, plan, own, assigned, stored, now)
        if gate.until is not None:
            outcome.wait_until(gate.until, now)
        for node, names in gate.announce.items():
            pods = [own[name] for name in names]
            timing = self.instance_control.notice(snapshot, {EventType.FREEZE: pods}, _freeze_work(node), now)
            if timing is not None and not timing.ready:
                outcome.wait_until(timing.starts_by, now)
                continue
            for pod in pods:
                self._mark_frozen(pod, node)
            self.events.normal(
                snapshot.scaleset,
                "HostFreeze",
                f"{', '.join(names)} on node {node} agreed to its freeze (approved, or the notice ran out); "
                "nothing is moved, and the node is labelled ready once every instance on it has agreed.",
            )
        for state in nodes:
            if state.freezing and state.name not in gate.held:
                self._release_frozen(snapshot, state.name)
        if not gate.held:
            return None
        if (stored or {}).get("reason") != gate.reason:
            post = self.events.warning if gate.reason == "MaxDeferralExceeded" else self.events.normal
            post(snapshot.scaleset, str(gate.reason), str(gate.message))
        return {
            "nodes": list(gate.held),
            "pendingSince": timestamp(gate.pending_since or now),
            "reason": gate.reason,
            "message": gate.message,
        }

    def _gate_freezes(
        self,
        snapshot: Snapshot,
        plan: FreezePlan,
        own: dict[str, dict[str, Any]],
        assigned: AssignedMaintenance | None,
        stored: dict[str, Any] | None,
        now: datetime,
    ) -> FreezeGate:
        """The Host gate for the freezes to tell: those some instance was told of or agreed to go on."""
        started = {
            node
            for node, names in plan.announce.items()
            for name in names
            if events_of(own[name]).find(event_id(own[name], EventType.FREEZE, _freeze_work(node)))
            is not None
        }
        started |= {mark for pod in own.values() if (mark := _frozen_on(pod)) is not None}
        pending_since = parse_time((stored or {}).get("pendingSince")) or now
        decision = gate_batch(assigned or AssignedMaintenance(), MaintenanceScope.HOST, now, pending_since)
        gate = gate_freezes(plan, started, decision, pending_since, now)
        if isinstance(decision, Deferred) and gate.announce and (stored or {}).get("nodes"):
            self.events.warning(snapshot.scaleset, decision.reason, decision.message)
        return gate

    def _mark_frozen(self, pod: dict[str, Any], node: str | None) -> None:
        try:
            self.kube.patch(
                core_path("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]),
                {"metadata": {"annotations": {ANNOTATION_FROZEN_ON: node}}},
            )
        except ApiError as error:
            if error.status != 404:  # a pod gone is no longer on the node
                raise

    def _release_frozen(self, snapshot: Snapshot, node: str) -> None:
        """`freeze` -> `ready` once every instance on the node, of every ScaleSet, has agreed.

        A node gone is left alone. A node no longer as this pass read it (the node tool took the label
        away or changed it: the patch's test fails, 422; or a 409) ends the pass: what it decided from
        the node may be stale, and the next pass reads it again."""
        on_node = [pod for pod in self.reader.pods_on_node(node) if not is_terminating(pod)]
        if not freeze_may_proceed(node, (_frozen_on(pod) for pod in on_node)):
            return
        label = "/metadata/labels/" + MAINTENANCE_LABEL.replace("~", "~0").replace("/", "~1")
        try:
            # Only a node still asking for a freeze: the tool may have taken the label away meanwhile.
            self.kube.patch(
                core_path("nodes", name=node),
                [
                    {"op": "test", "path": label, "value": MAINTENANCE_FREEZE},
                    {"op": "replace", "path": label, "value": MAINTENANCE_READY},
                ],
                JSON_PATCH,
            )
        except ApiError as error:
            if error.status == 404:
                return
            if error.status in (409, 422):
                raise Conflict(f"node {node} changed since this pass read it: {error.message}") from None
            raise
        log.info("every instance on node %s agreed to its freeze; labelled %s", node, MAINTENANCE_READY)
        self.events.normal(
            snapshot.scaleset,
            "HostFreezeReady",
            f"Every instance on node {node} agreed to its freeze: the node is labelled "
            f"{MAINTENANCE_LABEL}={MAINTENANCE_READY}.",
        )

    def _moved(
        self, snapshot: Snapshot, name: str, affected: set[str], gate: HealthGate, now: datetime
    ) -> bool:
        ordinal = int(name.rsplit("-", 1)[-1])
        pod = snapshot.pods.get(ordinal)
        if pod is None or is_terminating(pod) or (pod.get("spec") or {}).get("nodeName") in affected:
            return False
        return gate.is_healthy(instance_state(snapshot.name, ordinal, pod), now)

    def _release_nodes(self, names: tuple[str, ...], read: dict[str, dict[str, Any]]) -> None:
        """Tell the node tool it may go on: no instance of any ScaleSet is left on the node. Only the
        node as `read` (its metadata) when the pass decided: changed since, the pass ends and reads again."""
        for name in names:
            if self.reader.pods_on_node(
                name
            ):  # a pod on its way out is still there, and its successor must not find the node ready
                continue
            try:
                self.kube.patch(
                    core_path("nodes", name=name),
                    {
                        "metadata": {
                            "resourceVersion": read[name].get("resourceVersion"),
                            "labels": {MAINTENANCE_LABEL: MAINTENANCE_READY},
                        }
                    },
                )
            except ApiError as error:
                if error.status == 409:  # the node tool (or a cordon) changed the node meanwhile
                    raise Conflict(f"node {name}: {error}") from None
                if error.status != 404:
                    raise
            log.info(
                "node %s is empty of instances; labelled %s=%s", name, MAINTENANCE_LABEL, MAINTENANCE_READY
            )


def _frozen_on(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_FROZEN_ON) or None


def _freeze_work(node: str) -> str:
    """The work a Freeze event names, so that its EventId is the same on every pass."""
    return f"freeze@{node}"
