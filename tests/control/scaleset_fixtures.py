"""A ScaleSet, its pods and a Snapshot of them, as tests of control/ build them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scaleset_operator.api.models import ScaleSetSpec, UpgradePolicySpec
from scaleset_operator.control.context import Snapshot
from scaleset_operator.identity import ANNOTATION_UPDATED_AT, LABEL_ORDINAL, LABEL_REVISION, LABEL_SCALESET

UID = "uid-web"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"spec": {"containers": [{"name": "os", "image": "app:v1"}]}}
SCALESET_PATH = "/apis/fleet.scaleset.dev/v1alpha1/namespaces/shop/scalesets/web"


def scaleset(status: dict[str, Any] | None = None, version: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "metadata": {"name": "web", "namespace": "shop", "uid": UID, "resourceVersion": version},
        "spec": {"replicas": 1, "template": TEMPLATE},
        "status": status or {},
    }


def pod(
    ordinal: int,
    revision: str,
    *,
    phase: str = "Running",
    updated_at: str | None = None,
    created: str = "2026-03-01T10:00:00Z",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"web-{ordinal}",
            "namespace": "shop",
            "uid": f"uid-pod-{ordinal}",
            "resourceVersion": f"{20 + ordinal}",
            "creationTimestamp": created,
            "labels": {LABEL_SCALESET: "web", LABEL_ORDINAL: str(ordinal), LABEL_REVISION: revision},
            "annotations": {ANNOTATION_UPDATED_AT: updated_at} if updated_at else {},
            "ownerReferences": [{"uid": UID, "controller": True}],
        },
        "spec": {"nodeName": "node-0", "containers": TEMPLATE["spec"]["containers"]},
        "status": {"phase": phase},
    }


def snapshot(
    pods: dict[int, dict[str, Any]] | None = None,
    *,
    revision: str = "web-1",
    replicas: int = 1,
    status: dict[str, Any] | None = None,
    revisions: dict[str, dict[str, Any]] | None = None,
    **spec: Any,
) -> Snapshot:
    obj = scaleset(status)
    return Snapshot(
        obj,
        ScaleSetSpec.model_validate({"replicas": replicas, "template": TEMPLATE, **spec}),
        UpgradePolicySpec(),
        revisions=revisions or {},
        update_revision=revision,
        current_revision=revision,
        pods=pods or {},
        surges={},
        stored_status=dict(status or {}),
    )
