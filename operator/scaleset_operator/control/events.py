"""Kubernetes Events about a ScaleSet: each batch started and finished, each decision to wait or stop."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from scaleset_operator.control.kube import ApiError, Kube, core_path

log = logging.getLogger(__name__)

COMPONENT = "scaleset-operator"


class EventRecorder:
    """Posts core/v1 Events; a failed post is logged, never fatal (events are best effort in Kubernetes)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self._post(obj, "Normal", reason, message)

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self._post(obj, "Warning", reason, message)

    def _post(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": metadata["name"],
                "namespace": namespace,
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": COMPONENT,
        }
        log.info("%s %s/%s: %s: %s", type_, namespace, metadata["name"], reason, message)
        try:
            self.kube.create(core_path("events", namespace), event)
        except ApiError as error:
            log.warning("could not post event %s: %s", reason, error)
