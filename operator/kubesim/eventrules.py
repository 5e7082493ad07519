"""Validation of Events as the API server makes it, on the core/v1 shape that both Event APIs store, and
the conversion of a stored Event to the shape of either API (`convert_event`).

An Event without `eventTime` is an old-style one: its namespace must agree with its involved object's.
One with `eventTime` is new-style: it names who reported it and what happened. A create through
events.k8s.io/v1 is checked strictly besides (type, no deprecated fields, a series of at least two).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubesim.errors import Cause

REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024


def _invalid(path: str, value: str, detail: str) -> Cause:
    return Cause(path, f'Invalid value: "{value}": {detail}', "FieldValueInvalid")


def _required(path: str) -> Cause:
    return Cause(path, "Required value", "FieldValueRequired")


def validate_event(event: dict[str, Any], *, strict: bool, creating: bool) -> list[Cause]:
    """The causes that refuse `event` (core/v1 field names); `strict` for events.k8s.io/v1 requests."""
    causes: list[Cause] = []
    namespace = str((event.get("metadata") or {}).get("namespace") or "")
    involved = str((event.get("involvedObject") or {}).get("namespace") or "")
    controller_field = "reportingController" if strict else "reportingComponent"
    if not event.get("eventTime"):
        if (not involved and namespace not in ("", "default")) or (involved and namespace != involved):
            causes.append(_invalid("involvedObject.namespace", involved, "does not match event.namespace"))
    else:
        if not involved and namespace not in ("default", "kube-system"):
            causes.append(_invalid("involvedObject.namespace", involved, "does not match event.namespace"))
        if not event.get("reportingComponent"):
            causes.append(_required(controller_field))
        if not event.get("reportingInstance"):
            causes.append(_required("reportingInstance"))
        elif len(str(event["reportingInstance"])) > REPORTING_INSTANCE_LIMIT:
            causes.append(
                _invalid("reportingInstance", "", f"can have at most {REPORTING_INSTANCE_LIMIT} characters")
            )
        for field, limit in (("action", ACTION_LIMIT), ("reason", REASON_LIMIT)):
            if not event.get(field):
                causes.append(_required(field))
            elif len(str(event[field])) > limit:
                causes.append(_invalid(field, "", f"can have at most {limit} characters"))
        if len(str(event.get("message") or "")) > NOTE_LIMIT:
            causes.append(_invalid("message", "", f"can have at most {NOTE_LIMIT} characters"))
    if strict and creating:
        causes.extend(_strict_causes(event))
    return causes


def _strict_causes(event: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    series = event.get("series")
    if isinstance(series, dict):
        if int(series.get("count") or 0) < 2:
            causes.append(_invalid("series.count", "", "should be at least 2"))
        if not series.get("lastObservedTime"):
            causes.append(_required("series.lastObservedTime"))
    if not event.get("eventTime"):
        causes.append(_required("eventTime"))
    if event.get("type") not in ("Normal", "Warning"):
        causes.append(_invalid("type", "", f"has invalid value: {event.get('type') or ''}"))
    for field in ("firstTimestamp", "lastTimestamp", "count"):
        if event.get(field):
            causes.append(_invalid(field, "", "needs to be unset"))
    source = event.get("source") or {}
    if source.get("component") or source.get("host"):
        causes.append(_invalid("source", "", "needs to be unset"))
    return causes


_EVENT_RENAMES = (
    # (core/v1 field, events.k8s.io/v1 field)
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)


def convert_event(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
    """Convert an Event between core/v1 and events.k8s.io/v1: one stored object, two served shapes."""
    if obj.get("apiVersion") == api_version:
        return obj
    out = dict(obj)
    pairs: Iterable[tuple[str, str]] = (
        _EVENT_RENAMES if api_version == "events.k8s.io/v1" else ((b, a) for a, b in _EVENT_RENAMES)
    )
    for src, dst in pairs:
        if src in out:
            out[dst] = out.pop(src)
    out["apiVersion"] = api_version
    out["kind"] = "Event"
    return out
