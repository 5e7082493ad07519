"""Finding the instance behind a caller and reading or approving its scheduled events in the API.

Two sources: ``IndexedInstanceEvents`` (the endpoint: callers and documents from the watch-backed
index, one write per approval) and ``KubeInstanceEvents`` (``scaleset approve``: the API directly).
Both approve through ``write_approvals``, the one place an approval is written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from scaleset_operator.control.kube import ApiError, Kube, core_path
from scaleset_operator.imds.callers import Instance, PodRecord, Refusal, caller_by_address, caller_by_pod
from scaleset_operator.imds.index import InstanceIndex
from scaleset_operator.imds.tokens import BoundPod
from scaleset_operator.planning.scheduled_events import (
    EVENTS_ANNOTATION,
    EventDocument,
    UnknownEvent,
    approve,
    decode,
    encode,
)

__all__ = ["IndexedInstanceEvents", "Instance", "InstanceEvents", "KubeInstanceEvents", "write_approvals"]

CONFLICT_RETRIES = 5


class InstanceEvents(Protocol):
    """What the endpoint needs of the cluster; the Kubernetes implementation is IndexedInstanceEvents."""

    def ready(self, timeout: float) -> bool:
        """Whether the source knows the cluster's pods (waiting up to `timeout` seconds for it)."""

    def by_address(self, ip: str) -> Instance | Refusal:
        """The instance whose address `ip` is alone, or why there is none."""

    def by_token(self, pod: BoundPod) -> Instance | Refusal:
        """The instance a reviewed token is bound to, or why it is none."""

    def read_events(self, instance: Instance) -> EventDocument:
        """The instance's scheduled-events document (empty when it has none)."""

    def approve(self, instance: Instance, event_ids: Sequence[str]) -> EventDocument:
        """Approve the instance's events `event_ids` in one write; ids it no longer has are left out."""


def _document(pod: dict[str, Any]) -> EventDocument:
    return decode(((pod.get("metadata") or {}).get("annotations") or {}).get(EVENTS_ANNOTATION))


def write_approvals(
    kube: Kube,
    instance: Instance,
    event_ids: Sequence[str],
    now: datetime,
    pod: dict[str, Any] | None = None,
    written: Callable[[dict[str, Any], str], None] | None = None,
) -> tuple[EventDocument, list[str]]:
    """Approve `event_ids` on the instance's pod: (the document after, the ids it did not have).

    The one write of an approval: a merge patch of the events annotation carrying the pod's
    resourceVersion (and uid, when the instance was identified by it) as preconditions, so an approval
    never lands on a newer document it did not read, nor on a new pod of the same name. `pod` is the
    caller's copy to start from; on a conflict the pod is read again. `written(pod, based_on)` hears
    of each write that landed.
    """
    path = core_path("pods", instance.namespace, instance.name)
    for _ in range(CONFLICT_RETRIES):
        if pod is None:
            pod = kube.get_or_none(path)
        metadata = (pod or {}).get("metadata") or {}
        if pod is None or (instance.uid and metadata.get("uid") != instance.uid):
            return EventDocument(), list(event_ids)
        document = approved = _document(pod)
        unknown: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            try:
                approved = approve(approved, event_id, now)
            except UnknownEvent:
                unknown.append(event_id)
        if approved is document:
            return document, unknown
        based_on = str(metadata.get("resourceVersion") or "")
        body: dict[str, Any] = {
            "metadata": {
                "resourceVersion": based_on,
                "annotations": {EVENTS_ANNOTATION: encode(approved)},
            }
        }
        if instance.uid:
            body["metadata"]["uid"] = instance.uid
        try:
            answer = kube.patch(path, body)
        except ApiError as error:
            if error.status == 409:
                pod = None
                continue
            raise
        if written is not None:
            written(answer, based_on)
        return approved, unknown
    raise ApiError(409, "Conflict", f"pod {instance.namespace}/{instance.name} kept changing")


class IndexedInstanceEvents:
    """InstanceEvents from the watch-backed index: no API call to identify a caller or read its events."""

    def __init__(
        self,
        kube: Kube,
        index: InstanceIndex,
        namespaces: Collection[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.index = index
        self.namespaces = frozenset(namespaces) if namespaces else None
        self.clock = clock

    def ready(self, timeout: float) -> bool:
        return self.index.wait_synced(timeout)

    def by_address(self, ip: str) -> Instance | Refusal:
        return caller_by_address(ip, self.index.holders(ip), self.index.node_addresses(), self.namespaces)

    def by_token(self, pod: BoundPod) -> Instance | Refusal:
        record = self.index.pod(pod.uid)
        if record is not None and (record.namespace, record.name) != (pod.namespace, pod.name):
            record = None
        return caller_by_pod(record, f"{pod.namespace}/{pod.name}", self.namespaces)

    def _record(self, instance: Instance) -> PodRecord | None:
        record = self.index.pod(instance.uid)
        return record if record is not None and record.name == instance.name else None

    def read_events(self, instance: Instance) -> EventDocument:
        record = self._record(instance)
        return decode(record.events) if record is not None else EventDocument()

    def approve(self, instance: Instance, event_ids: Sequence[str]) -> EventDocument:
        record = self._record(instance)
        start = None
        if record is not None:
            # The indexed copy is enough to write from: the resourceVersion precondition refuses the
            # write if the pod has changed since, and then it is read again.
            start = {
                "metadata": {
                    "uid": record.uid,
                    "resourceVersion": record.resource_version,
                    "annotations": {EVENTS_ANNOTATION: record.events} if record.events else {},
                }
            }
        document, _ = write_approvals(self.kube, instance, event_ids, self.clock(), start, self.index.written)
        return document


class KubeInstanceEvents:
    """Reading and approving an instance's events over the Kubernetes API, for `scaleset approve`."""

    def __init__(self, kube: Kube, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.clock = clock

    def read_events(self, instance: Instance) -> EventDocument:
        pod = self.kube.get_or_none(core_path("pods", instance.namespace, instance.name))
        return EventDocument() if pod is None else _document(pod)

    def approve(self, instance: Instance, event_id: str) -> EventDocument:
        """Approve one event; raises UnknownEvent for an id the instance does not have."""
        document, unknown = write_approvals(self.kube, instance, [event_id], self.clock())
        if unknown:
            raise UnknownEvent(unknown[0])
        return document
