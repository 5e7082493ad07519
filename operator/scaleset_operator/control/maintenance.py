"""Maintenance in the reconcile pass: the windows that apply, and moving instances off nodes under maintenance.

The decisions are in planning/maintenance.py (assignment, the gate, deferral) and
planning/host_maintenance.py (which instances leave which nodes, one batch at a time); this actor
reads what they need (MaintenanceConfigurations, the namespace's labels, nodes), records the Host
batch in `status.hostMaintenance` before touching any instance (so a restarted operator finishes it),
and deletes the batch's pods so that the pass creates them again on other nodes.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scaleset_operator.api.models import MaintenanceConfiguration, MaintenanceScope
from scaleset_operator.control.context import Conflict, Outcome, Snapshot, timestamp
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path
from scaleset_operator.control.snapshot import instance_state, is_terminating
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.planning.batches import batch_size
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.host_maintenance import (
    MAINTENANCE_LABEL,
    MAINTENANCE_READY,
    NodeState,
    PlacedInstance,
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

    def __init__(self, kube: Kube, events: EventRecorder, instance_control: InstanceControl) -> None:
        self.kube = kube
        self.events = events
        self.instance_control = instance_control

    # ------------------------------------------------------------------ windows

    def assigned(self, snapshot: Snapshot) -> AssignedMaintenance:
        """The MaintenanceConfigurations that select this ScaleSet, united by scope."""
        configurations = []
        for raw in self.kube.list(fleet_path("maintenanceconfigurations")):
            try:
                configurations.append(MaintenanceConfiguration.model_validate(raw))
            except ValidationError as error:  # the API server validated it; a newer field is not fatal
                log.warning("MaintenanceConfiguration %s ignored: %s", raw["metadata"].get("name"), error)
        namespace = self.kube.get_or_none(core_path("namespaces", name=snapshot.namespace)) or {}
        result = assign(
            configurations,
            snapshot.scaleset["metadata"].get("labels") or {},
            (namespace.get("metadata") or {}).get("labels") or {},
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
        """One step of moving this ScaleSet's instances off nodes under maintenance.

        Returns status.hostMaintenance (None when no instance is on such a node and none is moving).
        Runs only between upgrades: an upgrade, rollback or restart holds the instances first.
        """
        record: dict[str, Any] = dict((snapshot.scaleset.get("status") or {}).get("hostMaintenance") or {})
        if snapshot.upgrade.get("locked"):
            return record or None
        nodes = [
            NodeState(
                node["metadata"]["name"],
                cordoned=bool((node.get("spec") or {}).get("unschedulable")),
                maintenance=(node["metadata"].get("labels") or {}).get(MAINTENANCE_LABEL),
            )
            for node in self.kube.list(core_path("nodes"))
        ]
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
        plan = plan_host_maintenance(
            nodes, placed, batch_size(snapshot.spec.replicas, snapshot.policy), moving
        )
        self._release_nodes(plan.nodes_ready)
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
        self._write(snapshot, record)
        self.events.normal(snapshot.scaleset, "HostMaintenance", record["message"])
        for pod in pods:
            self.kube.delete(
                core_path("pods", snapshot.namespace, pod["metadata"]["name"]),
                preconditions_uid=pod["metadata"].get("uid"),
            )
            outcome.notes.append(f"redeploying {pod['metadata']['name']}")
        outcome.wait_until(None, now)
        return record

    def _moved(
        self, snapshot: Snapshot, name: str, affected: set[str], gate: HealthGate, now: datetime
    ) -> bool:
        ordinal = int(name.rsplit("-", 1)[-1])
        pod = snapshot.pods.get(ordinal)
        if pod is None or is_terminating(pod) or (pod.get("spec") or {}).get("nodeName") in affected:
            return False
        return gate.is_healthy(instance_state(snapshot.name, ordinal, pod), now)

    def _release_nodes(self, names: tuple[str, ...]) -> None:
        """Tell the node tool it may go on: no instance of any ScaleSet is left on the node."""
        for name in names:
            left = (
                self.kube.request(
                    "GET",
                    core_path("pods"),
                    query={"labelSelector": LABEL_SCALESET, "fieldSelector": f"spec.nodeName={name}"},
                ).get("items")
                or []
            )
            if left:  # a pod on its way out is still there, and its successor must not find the node ready
                continue
            try:
                self.kube.patch(
                    core_path("nodes", name=name),
                    {"metadata": {"labels": {MAINTENANCE_LABEL: MAINTENANCE_READY}}},
                )
            except ApiError as error:
                if error.status != 404:
                    raise
            log.info(
                "node %s is empty of instances; labelled %s=%s", name, MAINTENANCE_LABEL, MAINTENANCE_READY
            )

    def _write(self, snapshot: Snapshot, record: dict[str, Any]) -> None:
        path = fleet_path("scalesets", snapshot.namespace, snapshot.name, "status")
        body = {
            "metadata": {"resourceVersion": snapshot.resource_version},
            "status": {"hostMaintenance": record},
        }
        try:
            updated = self.kube.patch(path, body)
        except ApiError as error:
            if error.status == 409:
                raise Conflict(str(error)) from None
            raise
        snapshot.scaleset["status"] = updated.get("status") or {}
        snapshot.stored_status = copy.deepcopy(snapshot.scaleset["status"])
        snapshot.scaleset["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
