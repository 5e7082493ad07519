"""Writing scheduled events onto instance pods before disruptive work, and reading back whether a batch may go.

The decisions are in planning.scheduled_events; this module only reads and writes pod annotations
and posts the Kubernetes Events that go with them. The controller calls, for each batch of work of
one kind (Reboot, Redeploy, Terminate, Freeze):

1. ``timing = control.prepare(pods, event_type, work, now, not_before_timeout)``: announces
   the event on every member that does not have it yet and says whether the batch may start;
2. while ``not timing.ready``: wait (requeue at ``timing.starts_by`` at the latest);
3. ``control.start(pods, event_type, work, now)`` just before the work;
4. ``control.finish(pod, event_type, work)`` once the instance is back (a deleted pod takes its
   events with it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.kube import ApiError, Kube, core_path
from scaleset_operator.control.reader import Reader
from scaleset_operator.planning.scheduled_events import (
    DEFAULT_NOT_BEFORE_TIMEOUT,
    EVENTS_ANNOTATION,
    BatchTiming,
    EventDocument,
    EventType,
    announce,
    batch_timing,
    decode,
    encode,
    event_id_for,
    finish,
    start,
)

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 5
_DESCRIPTIONS = {
    EventType.REBOOT: "The instance restarts for an update.",
    EventType.REDEPLOY: "The instance moves to another node; its temp disk is lost.",
    EventType.TERMINATE: "The instance is removed on scale-in.",
    EventType.FREEZE: "The instance's node undergoes maintenance.",
    EventType.PREEMPT: "The instance is evicted.",
}


def events_of(pod: dict[str, Any]) -> EventDocument:
    """The scheduled-events document on a pod."""
    return decode(((pod.get("metadata") or {}).get("annotations") or {}).get(EVENTS_ANNOTATION))


def event_id(pod: dict[str, Any], event_type: EventType, work: str) -> str:
    return event_id_for(pod["metadata"].get("uid") or pod["metadata"]["name"], event_type, work)


class ScheduledEventsControl:
    """Announces, starts and finishes scheduled events on pods; one per controller."""

    def __init__(self, kube: Kube, events: EventRecorder | None = None) -> None:
        self.kube = kube
        self.reader = Reader(kube)
        self.events = events or EventRecorder(kube)

    def _update(
        self, pod: dict[str, Any], change: Callable[[EventDocument], EventDocument]
    ) -> tuple[dict[str, Any], EventDocument, bool]:
        """Apply `change` to the pod's document with optimistic concurrency; (pod, document, changed).

        The caller's pod takes the written annotation and resourceVersion when nothing else changed it in
        between: the pass's own write is part of what it read, so a removal fenced by that
        resourceVersion is not refused because of it.
        """
        metadata = pod["metadata"]
        path = core_path("pods", metadata["namespace"], metadata["name"])
        read = pod
        for _ in range(CONFLICT_RETRIES):
            document = events_of(pod)
            changed = change(document)
            if changed is document:
                return pod, document, False
            body = {
                "metadata": {
                    "resourceVersion": pod["metadata"].get("resourceVersion"),
                    "annotations": {EVENTS_ANNOTATION: encode(changed)},
                }
            }
            try:
                written = self.kube.patch(path, body)
                if pod is read:  # after a conflict the pass's read is stale, and stays so
                    read["metadata"]["resourceVersion"] = written["metadata"].get("resourceVersion")
                    read["metadata"]["annotations"] = written["metadata"].get("annotations") or {}
                return written, changed, True
            except ApiError as error:
                if error.status != 409:
                    raise
            fresh = self.reader.pod(metadata["namespace"], metadata["name"])
            if fresh is None:
                return pod, EventDocument(), False
            pod = fresh
        raise ApiError(409, "Conflict", f"pod {metadata['namespace']}/{metadata['name']} kept changing")

    def prepare(
        self,
        pods: Sequence[dict[str, Any]],
        event_type: EventType,
        work: str,
        now: datetime,
        not_before_timeout: timedelta = DEFAULT_NOT_BEFORE_TIMEOUT,
    ) -> BatchTiming:
        """Announce `event_type` for `work` (e.g. the target revision) on each pod; may the batch start?"""
        documents: dict[str, EventDocument] = {}
        ids: dict[str, str] = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            ids[name] = event_id(pod, event_type, work)
            pod_after, document, announced = self._update(
                pod,
                functools.partial(
                    announce,
                    event_id=ids[name],
                    event_type=event_type,
                    instance=name,
                    now=now,
                    not_before_timeout=not_before_timeout,
                    description=_DESCRIPTIONS[event_type],
                ),
            )
            documents[name] = document
            if announced:
                scheduled = document.find(ids[name])
                assert scheduled is not None
                self.events.normal(
                    pod_after,
                    "ScheduledEventAnnounced",
                    f"{event_type} of {name} announced as event {ids[name]}, not before "
                    f"{scheduled.not_before.isoformat()}.",
                )
        return batch_timing(documents, ids, now)

    def start(self, pods: Sequence[dict[str, Any]], event_type: EventType, work: str, now: datetime) -> None:
        """Mark each pod's event Started as its work begins (each must be approved or due)."""
        for pod in pods:
            identifier = event_id(pod, event_type, work)
            if events_of(pod).find(identifier) is None:
                continue
            pod_after, _, changed = self._update(pod, functools.partial(start, event_id=identifier, now=now))
            if changed:
                self.events.normal(
                    pod_after, "ScheduledEventStarted", f"{event_type} of {pod['metadata']['name']} started."
                )

    def finish(self, pod: dict[str, Any], event_type: EventType, work: str) -> None:
        """Remove the event once the work is done."""
        identifier = event_id(pod, event_type, work)
        self._update(pod, functools.partial(finish, event_id=identifier))
