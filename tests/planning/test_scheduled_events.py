"""The scheduled-event lifecycle of an instance: announce, approve, start, finish, and the batch that waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.planning.scheduled_events import (
    EventDocument,
    EventStatus,
    EventType,
    UnknownEvent,
    announce,
    approve,
    batch_timing,
    decode,
    encode,
    event_id_for,
    finish,
    imds_document,
    start,
)

NOW = datetime(2026, 9, 19, 18, 14, 47, tzinfo=UTC)


def announced(instance: str = "web-0", event_id: str = "E-0", **more: Any) -> EventDocument:
    return announce(
        EventDocument(), event_id=event_id, event_type=EventType.REBOOT, instance=instance, now=NOW, **more
    )


def test_announce_sets_not_before_fifteen_minutes_ahead_by_default() -> None:
    document = announced()
    (event,) = document.events
    assert event.status == EventStatus.SCHEDULED
    assert event.not_before == NOW + timedelta(minutes=15)
    assert document.incarnation == 1


def test_announcing_the_same_event_twice_changes_nothing() -> None:
    document = announced()
    again = announce(
        document,
        event_id="E-0",
        event_type=EventType.REBOOT,
        instance="web-0",
        now=NOW + timedelta(minutes=3),
    )
    assert again is document


def test_an_event_is_due_when_approved_or_at_not_before() -> None:
    document = announced(not_before_timeout=timedelta(minutes=5))
    event = document.events[0]
    assert not event.is_due(NOW + timedelta(minutes=4, seconds=59))
    assert event.is_due(NOW + timedelta(minutes=5))
    assert approve(document, "E-0", NOW).events[0].is_due(NOW)


def test_start_before_due_is_refused_and_after_approval_allowed() -> None:
    document = announced()
    with pytest.raises(ValueError):
        start(document, "E-0", NOW)
    started = start(approve(document, "E-0", NOW), "E-0", NOW)
    assert started.events[0].status == EventStatus.STARTED


def test_approving_an_unknown_event_is_refused() -> None:
    with pytest.raises(UnknownEvent):
        approve(announced(), "someone-else", NOW)


def test_every_change_counts_the_incarnation_up_and_finish_removes_the_event() -> None:
    document = announced()
    approved = approve(document, "E-0", NOW)
    started = start(approved, "E-0", NOW)
    done = finish(started, "E-0")
    assert [d.incarnation for d in (document, approved, started, done)] == [1, 2, 3, 4]
    assert done.events == ()
    assert approve(approved, "E-0", NOW) is approved
    assert finish(done, "E-0") is done


def test_batch_starts_when_every_member_is_approved_or_due() -> None:
    documents = {
        "web-0": announced("web-0", "E-0"),
        "web-5": announced("web-5", "E-5", not_before_timeout=timedelta(minutes=10)),
    }
    ids = {"web-0": "E-0", "web-5": "E-5"}
    timing = batch_timing(documents, ids, NOW)
    assert not timing.ready
    assert timing.waiting_for == ("web-0", "web-5")
    assert timing.starts_by == NOW + timedelta(minutes=15)
    documents["web-0"] = approve(documents["web-0"], "E-0", NOW)
    assert batch_timing(documents, ids, NOW + timedelta(minutes=10)).ready


def test_a_member_not_yet_announced_holds_the_batch() -> None:
    timing = batch_timing({"web-0": announced()}, {"web-0": "E-0", "web-5": "E-5"}, NOW + timedelta(hours=1))
    assert timing.waiting_for == ("web-5",)
    assert timing.starts_by is None


def test_event_ids_are_stable_guids() -> None:
    first = event_id_for("uid-1", EventType.REBOOT, "web-7d9f")
    assert first == event_id_for("uid-1", EventType.REBOOT, "web-7d9f")
    assert first != event_id_for("uid-2", EventType.REBOOT, "web-7d9f")
    assert len(first) == 36 and first == first.upper()


def test_imds_json_has_the_services_shape() -> None:
    document = announced(description="Update of the OS image", duration_seconds=60)
    assert imds_document(document, "2020-07-01") == {
        "DocumentIncarnation": 1,
        "Events": [
            {
                "EventId": "E-0",
                "EventStatus": "Scheduled",
                "EventType": "Reboot",
                "ResourceType": "VirtualMachine",
                "Resources": ["web-0"],
                "NotBefore": "Sat, 19 Sep 2026 18:29:47 GMT",
                "Description": "Update of the OS image",
                "EventSource": "Platform",
                "DurationInSeconds": 60,
            }
        ],
    }
    old = imds_document(document, "2017-11-01")["Events"][0]
    assert "Description" not in old and "DurationInSeconds" not in old
    started = start(approve(document, "E-0", NOW), "E-0", NOW)
    assert imds_document(started, "2020-07-01")["Events"][0]["NotBefore"] == ""


def test_unreadable_annotation_is_an_empty_document() -> None:
    assert decode("{not json") == EventDocument()
    assert decode(None) == EventDocument()


operations = st.lists(
    st.tuples(
        st.sampled_from(["announce", "approve", "start", "finish"]), st.integers(0, 2), st.integers(0, 30)
    ),
    max_size=25,
)


@given(operations)
def test_incarnation_changes_exactly_when_the_document_does_and_survives_the_annotation(
    steps: list[tuple[str, int, int]],
) -> None:
    document = EventDocument()
    for operation, which, minutes in steps:
        now = NOW + timedelta(minutes=minutes)
        event_id = f"E-{which}"
        before = document
        try:
            if operation == "announce":
                document = announce(
                    document, event_id=event_id, event_type=EventType.REDEPLOY, instance="web-0", now=now
                )
            elif operation == "approve":
                document = approve(document, event_id, now)
            elif operation == "start":
                document = start(document, event_id, now)
            else:
                document = finish(document, event_id)
        except (UnknownEvent, ValueError):
            assert document is before
        if document.events != before.events:
            assert document.incarnation == before.incarnation + 1
        else:
            assert document.incarnation == before.incarnation
        assert decode(encode(document)) == document
