"""Finding the instance behind a caller's IP and reading or approving its scheduled events in the API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from scaleset_operator.control.kube import ApiError, Kube, core_path
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.planning.scheduled_events import (
    EVENTS_ANNOTATION,
    EventDocument,
    approve,
    decode,
    encode,
)

CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class Instance:
    """An instance pod, as a caller of the endpoint is identified."""

    namespace: str
    name: str
    ip: str


class InstanceEvents(Protocol):
    """What the endpoint needs of the cluster; the Kubernetes implementation is KubeInstanceEvents."""

    def find_instance_by_ip(self, ip: str) -> Instance | None:
        """The instance pod whose IP is `ip`, or None when the address is no instance's."""

    def read_events(self, instance: Instance) -> EventDocument:
        """The instance's scheduled-events document (empty when it has none)."""

    def approve(self, instance: Instance, event_id: str) -> EventDocument:
        """Approve one of the instance's events; raises UnknownEvent for an id it does not have."""


def _live(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and status.get("phase") not in (
        "Succeeded",
        "Failed",
    )


class KubeInstanceEvents:
    """InstanceEvents over the Kubernetes API: the events live in a pod annotation."""

    def __init__(self, kube: Kube, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.clock = clock

    def find_instance_by_ip(self, ip: str) -> Instance | None:
        # Instance pods only; the field selector narrows the list where the API server supports it.
        pods = (
            self.kube.request(
                "GET",
                core_path("pods"),
                query={"labelSelector": LABEL_SCALESET, "fieldSelector": f"status.podIP={ip}"},
            ).get("items")
            or []
        )
        for pod in sorted(pods, key=lambda pod: not _live(pod)):
            status = pod.get("status") or {}
            addresses = {status.get("podIP")} | {entry.get("ip") for entry in status.get("podIPs") or []}
            if ip in addresses:
                metadata = pod["metadata"]
                return Instance(metadata["namespace"], metadata["name"], ip)
        return None

    def _pod(self, instance: Instance) -> dict[str, Any] | None:
        return self.kube.get_or_none(core_path("pods", instance.namespace, instance.name))

    def read_events(self, instance: Instance) -> EventDocument:
        pod = self._pod(instance)
        if pod is None:
            return EventDocument()
        return decode(((pod.get("metadata") or {}).get("annotations") or {}).get(EVENTS_ANNOTATION))

    def approve(self, instance: Instance, event_id: str) -> EventDocument:
        for _ in range(CONFLICT_RETRIES):
            pod = self._pod(instance)
            if pod is None:
                return approve(EventDocument(), event_id, self.clock())  # raises UnknownEvent
            metadata = pod.get("metadata") or {}
            document = decode((metadata.get("annotations") or {}).get(EVENTS_ANNOTATION))
            approved = approve(document, event_id, self.clock())
            if approved is document:
                return document
            body = {
                "metadata": {
                    "resourceVersion": metadata.get("resourceVersion"),
                    "annotations": {EVENTS_ANNOTATION: encode(approved)},
                }
            }
            try:
                self.kube.patch(core_path("pods", instance.namespace, instance.name), body)
            except ApiError as error:
                if error.status == 409:
                    continue
                raise
            return approved
        raise ApiError(409, "Conflict", f"pod {instance.namespace}/{instance.name} kept changing")
