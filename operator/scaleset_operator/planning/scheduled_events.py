"""Scheduled events of an instance: announce, approve, start and finish, as a document kept on its pod.

Each instance has one document, kept as JSON in the pod annotation ``fleet.scaleset.dev/scheduled-events``
so that a restarted operator carries on where it stopped. Its ``incarnation`` is counted up by every
change of the events, so the ``DocumentIncarnation`` an instance reads changes whenever its document does
and depends only on what the API server holds. The lifecycle, as the cloud service has it:

1. the operator announces an event (``Scheduled``, ``NotBefore`` = now + notBeforeTimeout);
2. the instance may approve it early (a ``StartRequests`` POST);
3. once approved or due, the operator starts it (``Started``, ``NotBefore`` blank) and does the work;
4. when the work is done, the event is removed (for Redeploy and Terminate the pod, and so the
   document, goes away with it).

A batch starts when every member's event is approved or due (:func:`batch_timing`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

EVENTS_ANNOTATION = "fleet.scaleset.dev/scheduled-events"
SCHEDULED_EVENTS_PATH = "/metadata/scheduledevents"
ENDPOINT_ENV = "SCHEDULED_EVENTS_ENDPOINT"
DEFAULT_NOT_BEFORE_TIMEOUT = timedelta(minutes=15)
# A fixed namespace: the same pod, work and kind of event always give the same EventId.
_EVENT_ID_NAMESPACE = uuid.UUID("5f0b2c38-1a7e-4d59-9a59-3c1f6f1e8a11")


class EventType(StrEnum):
    REBOOT = "Reboot"
    REDEPLOY = "Redeploy"
    FREEZE = "Freeze"
    PREEMPT = "Preempt"
    TERMINATE = "Terminate"


class EventStatus(StrEnum):
    SCHEDULED = "Scheduled"
    STARTED = "Started"


class EventSource(StrEnum):
    PLATFORM = "Platform"
    USER = "User"


class UnknownEvent(KeyError):
    """An EventId that is not among the instance's events."""


@dataclass(frozen=True)
class ScheduledEvent:
    """One announced disruption of one instance."""

    event_id: str
    event_type: EventType
    resource: str
    not_before: datetime
    status: EventStatus = EventStatus.SCHEDULED
    description: str = ""
    source: EventSource = EventSource.PLATFORM
    duration_seconds: int = -1
    approved_at: datetime | None = None

    def is_due(self, now: datetime) -> bool:
        """Approved by the instance, already started, or past NotBefore."""
        return self.status == EventStatus.STARTED or self.approved_at is not None or now >= self.not_before


@dataclass(frozen=True)
class EventDocument:
    """The scheduled events of one instance and the incarnation of that document."""

    incarnation: int = 0
    events: tuple[ScheduledEvent, ...] = ()

    def find(self, event_id: str) -> ScheduledEvent | None:
        return next((event for event in self.events if event.event_id == event_id), None)

    def _with(self, events: Iterable[ScheduledEvent]) -> EventDocument:
        events = tuple(events)
        if events == self.events:
            return self
        return EventDocument(self.incarnation + 1, events)


def event_id_for(pod_uid: str, event_type: EventType, work: str) -> str:
    """A stable EventId for `work` (e.g. the target revision) of `event_type` on the pod with `pod_uid`."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{pod_uid}/{event_type}/{work}")).upper()


# --------------------------------------------------------------------------- lifecycle


def announce(
    document: EventDocument,
    *,
    event_id: str,
    event_type: EventType,
    instance: str,
    now: datetime,
    not_before_timeout: timedelta = DEFAULT_NOT_BEFORE_TIMEOUT,
    description: str = "",
    source: EventSource = EventSource.PLATFORM,
    duration_seconds: int = -1,
) -> EventDocument:
    """The document with the event announced; unchanged when that EventId is already there."""
    if document.find(event_id) is not None:
        return document
    event = ScheduledEvent(
        event_id,
        event_type,
        instance,
        not_before=(now + not_before_timeout).astimezone(UTC).replace(microsecond=0),
        description=description,
        source=source,
        duration_seconds=duration_seconds,
    )
    return document._with((*document.events, event))


def approve(document: EventDocument, event_id: str, now: datetime) -> EventDocument:
    """The instance asks for the event to start now; raises UnknownEvent for an id it does not have."""
    event = document.find(event_id)
    if event is None:
        raise UnknownEvent(event_id)
    if event.approved_at is not None or event.status == EventStatus.STARTED:
        return document
    approved = replace(event, approved_at=now.astimezone(UTC).replace(microsecond=0))
    return document._with(approved if item.event_id == event_id else item for item in document.events)


def start(document: EventDocument, event_id: str, now: datetime) -> EventDocument:
    """The operator begins the work of an approved or due event: Scheduled -> Started.

    Raises ValueError when the event is neither approved nor due (the caller should have waited).
    """
    event = document.find(event_id)
    if event is None:
        raise UnknownEvent(event_id)
    if event.status == EventStatus.STARTED:
        return document
    if not event.is_due(now):
        raise ValueError(
            f"event {event_id} is neither approved nor due before {event.not_before.isoformat()}"
        )
    started = replace(event, status=EventStatus.STARTED)
    return document._with(started if item.event_id == event_id else item for item in document.events)


def finish(document: EventDocument, event_id: str) -> EventDocument:
    """The work is done: the event leaves the document."""
    return document._with(event for event in document.events if event.event_id != event_id)


@dataclass(frozen=True)
class BatchTiming:
    """Whether a batch may start, and if not, who it waits for and until when at the latest."""

    ready: bool
    waiting_for: tuple[str, ...]
    starts_by: datetime | None


def batch_timing(
    documents: Mapping[str, EventDocument], event_ids: Mapping[str, str], now: datetime
) -> BatchTiming:
    """A batch may start when every member's event is approved or due.

    `documents` and `event_ids` are keyed by instance name; an instance whose event is missing
    from its document has not been announced yet and holds the batch.
    """
    waiting: list[str] = []
    latest: datetime | None = None
    unannounced = False
    for instance, event_id in sorted(event_ids.items()):
        event = documents.get(instance, EventDocument()).find(event_id)
        if event is None:
            waiting.append(instance)
            unannounced = True
        elif not event.is_due(now):
            waiting.append(instance)
            latest = event.not_before if latest is None else max(latest, event.not_before)
    return BatchTiming(not waiting, tuple(waiting), None if unannounced else latest)


# --------------------------------------------------------------------------- the annotation


def encode(document: EventDocument) -> str:
    """The annotation value of a document."""
    return json.dumps(
        {
            "incarnation": document.incarnation,
            "events": [
                {
                    "id": event.event_id,
                    "type": str(event.event_type),
                    "resource": event.resource,
                    "status": str(event.status),
                    "notBefore": event.not_before.astimezone(UTC).isoformat(),
                    "description": event.description,
                    "source": str(event.source),
                    "durationInSeconds": event.duration_seconds,
                    "approvedAt": None if event.approved_at is None else event.approved_at.isoformat(),
                }
                for event in document.events
            ],
        },
        separators=(",", ":"),
    )


def decode(text: str | None) -> EventDocument:
    """The document of an annotation value; an absent or unreadable one is an empty document."""
    if not text:
        return EventDocument()
    try:
        raw: dict[str, Any] = json.loads(text)
        return EventDocument(
            int(raw.get("incarnation", 0)),
            tuple(
                ScheduledEvent(
                    str(item["id"]),
                    EventType(item["type"]),
                    str(item["resource"]),
                    datetime.fromisoformat(item["notBefore"]),
                    EventStatus(item.get("status", EventStatus.SCHEDULED)),
                    str(item.get("description", "")),
                    EventSource(item.get("source", EventSource.PLATFORM)),
                    int(item.get("durationInSeconds", -1)),
                    None if not item.get("approvedAt") else datetime.fromisoformat(item["approvedAt"]),
                )
                for item in raw.get("events", [])
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        # Written by hand or by a newer operator: start a fresh document rather than fail the instance.
        return EventDocument()


# --------------------------------------------------------------------------- the service's JSON

API_VERSIONS = ("2017-03-01", "2017-11-01", "2019-01-01", "2019-08-01", "2020-07-01")


def _http_date(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def imds_document(document: EventDocument, api_version: str) -> dict[str, Any]:
    """The document as the Instance Metadata Service returns it for `api_version` (one of API_VERSIONS).

    Fields arrive with the versions that introduced them: Description and EventSource in 2019-08-01,
    DurationInSeconds in 2020-07-01. NotBefore is blank once an event has started.
    """
    events = []
    for event in document.events:
        item: dict[str, Any] = {
            "EventId": event.event_id,
            "EventStatus": str(event.status),
            "EventType": str(event.event_type),
            "ResourceType": "VirtualMachine",
            "Resources": [event.resource],
            "NotBefore": "" if event.status == EventStatus.STARTED else _http_date(event.not_before),
        }
        if api_version >= "2019-08-01":
            item["Description"] = event.description
            item["EventSource"] = str(event.source)
        if api_version >= "2020-07-01":
            item["DurationInSeconds"] = event.duration_seconds
        events.append(item)
    return {"DocumentIncarnation": document.incarnation, "Events": events}
