"""The PodDisruptionBudget a ScaleSet may ask the operator to keep over its instances.

With `spec.disruptionBudget.enabled` the operator keeps one PodDisruptionBudget, named after the
ScaleSet and owned by it, that selects its instances and allows as many of them down as the policy's
maxUnhealthyInstancePercent does; so a drain by anyone else (kubectl drain, the cluster autoscaler, a
node reboot tool) keeps to the same budget as the operator's own evictions. It follows the policy and
`spec.replicas`, and goes when the switch is turned off. A PodDisruptionBudget of that name that the
ScaleSet does not own is reported and left alone, never adopted.
"""

from __future__ import annotations

from typing import Any

from scaleset_operator.api.models import ScaleSetSpec
from scaleset_operator.control.context import Snapshot, owned_by
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, group_path
from scaleset_operator.control.manifests import owner_reference
from scaleset_operator.identity import selector_labels
from scaleset_operator.planning.repairs import unavailability_budget


def budget_path(namespace: str, name: str | None = None) -> str:
    return group_path("policy", "v1", "poddisruptionbudgets", namespace, name)


def budget_looked_at(spec: ScaleSetSpec, stored_status: dict[str, Any]) -> bool:
    """Whether a pass looks at the PodDisruptionBudget: asked for, or recorded in status (to delete it)."""
    return spec.disruption_budget.enabled or bool(stored_status.get("disruptionBudget"))


def disruption_budget(snapshot: Snapshot) -> dict[str, Any]:
    """The PodDisruptionBudget of a ScaleSet: its instances, maxUnavailable the policy's budget.

    An instance that is not Ready serves nothing and is counted down already, so it may always be
    evicted (AlwaysAllow): the budget guards the Ready ones, and never keeps a broken instance from
    being replaced by a newer template or a repair.
    """
    percent = snapshot.policy.rolling_upgrade.max_unhealthy_instance_percent
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": snapshot.name,
            "namespace": snapshot.namespace,
            "labels": selector_labels(snapshot.name),
            "ownerReferences": [owner_reference(snapshot.scaleset)],
        },
        "spec": {
            "maxUnavailable": unavailability_budget(snapshot.spec.replicas, percent),
            "selector": {"matchLabels": selector_labels(snapshot.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


class DisruptionBudgetControl:
    """Creates, updates and deletes the PodDisruptionBudget a ScaleSet asks for."""

    def __init__(self, kube: Kube, events: EventRecorder) -> None:
        self.kube = kube
        self.events = events

    def reconcile(self, snapshot: Snapshot) -> dict[str, Any] | None:
        """Bring the PodDisruptionBudget in line with the spec; returns status.disruptionBudget."""
        enabled = snapshot.spec.disruption_budget.enabled
        if not snapshot.disruption_budget_read:
            return None  # never enabled: nothing to look at (control/reader.py read nothing)
        path = budget_path(snapshot.namespace, snapshot.name)
        existing = snapshot.disruption_budget
        uid = snapshot.scaleset["metadata"]["uid"]
        if not enabled:
            if existing is not None and owned_by(existing, uid):
                try:
                    self.kube.delete_exactly(
                        path, existing["metadata"].get("uid"), existing["metadata"].get("resourceVersion")
                    )
                except ApiError as error:
                    if error.status != 409:  # changed meanwhile: the next pass looks again
                        raise
                    return None
                self.events.normal(
                    snapshot.scaleset,
                    "DisruptionBudgetDeleted",
                    f"PodDisruptionBudget {snapshot.name} is deleted: spec.disruptionBudget is off.",
                )
            return None
        wanted = disruption_budget(snapshot)
        status: dict[str, Any] = {"name": snapshot.name, "maxUnavailable": wanted["spec"]["maxUnavailable"]}
        if existing is None:
            try:
                self.kube.create(budget_path(snapshot.namespace), wanted)
            except ApiError as error:
                if error.status != 409:  # made meanwhile: the next pass looks at it
                    raise
                return status
            self.events.normal(
                snapshot.scaleset,
                "DisruptionBudgetCreated",
                f"PodDisruptionBudget {snapshot.name} allows {status['maxUnavailable']} instance(s) down.",
            )
            return status
        if not owned_by(existing, uid):
            problem = (
                f"PodDisruptionBudget {snapshot.name} exists and does not belong to this ScaleSet; it is "
                "left alone, and spec.disruptionBudget is not kept until it is renamed or deleted."
            )
            if (snapshot.stored_status.get("disruptionBudget") or {}).get("problem") != problem:
                self.events.warning(snapshot.scaleset, "DisruptionBudgetNameTaken", problem)
            return {"name": snapshot.name, "problem": problem}
        if any(existing.get("spec", {}).get(key) != value for key, value in wanted["spec"].items()):
            body = {
                "metadata": {"resourceVersion": existing["metadata"].get("resourceVersion")},
                "spec": {"minAvailable": None, **wanted["spec"]},
            }
            try:
                self.kube.patch(path, body, MERGE_PATCH)
            except ApiError as error:
                if error.status not in (404, 409):  # changed or gone meanwhile: the next pass looks again
                    raise
                return status
            self.events.normal(
                snapshot.scaleset,
                "DisruptionBudgetUpdated",
                f"PodDisruptionBudget {snapshot.name} now allows {status['maxUnavailable']} instance(s) down.",
            )
        return status
