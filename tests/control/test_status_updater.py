"""The status updater, the one writer of a ScaleSet's status, against a recording fake of the API.

The write-ahead record is guarded by the resourceVersion and never retried (a 409 ends the pass); the
final status is applied again after a 409 when nobody wrote the status since; a 404 is the ScaleSet gone;
any other refusal (422) goes to the pass as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import SCALESET_PATH, scaleset, snapshot

from scaleset_operator.control.context import Conflict, Snapshot
from scaleset_operator.control.kube import ApiError
from scaleset_operator.control.status_updater import WRITE_ATTEMPTS, ScaleSetGone, StatusUpdater

STATUS_PATH = f"{SCALESET_PATH}/status"
BEFORE = {"replicas": 3, "upgrade": {"phase": "Idle"}}
BATCH = {"upgrade": {"phase": "RollingForward", "currentBatch": {"instances": ["web-0"]}}}


def setup(*refused: int) -> tuple[FakeKube, Snapshot]:
    kube = FakeKube({SCALESET_PATH: scaleset(BEFORE)})
    for status in refused:
        kube.refuse("PATCH", STATUS_PATH, status)
    return kube, snapshot(status=BEFORE)


def patches(kube: FakeKube) -> list[Any]:
    return [c.body for c in kube.calls if c.method == "PATCH"]


def someone_else_writes(kube: FakeKube, status: dict[str, Any] | None = None) -> None:
    """Another writer changes the ScaleSet (its metadata, or its status too) after the pass read it."""
    stored = kube.objects[SCALESET_PATH]
    stored["metadata"]["resourceVersion"] = "9"
    if status is not None:
        stored["status"] = status


def test_a_record_carries_the_resource_version_read_and_the_next_one_the_version_it_got() -> None:
    kube, state = setup()
    updater = StatusUpdater(kube)
    updater.record(state, BATCH)
    updater.record(state, {"upgrade": {"reason": "BatchStarted"}})
    assert [p["metadata"]["resourceVersion"] for p in patches(kube)] == ["7", "8"]
    assert patches(kube)[0]["status"] == BATCH
    assert state.resource_version == "9"
    assert state.stored_status["upgrade"]["currentBatch"] == {"instances": ["web-0"]}
    assert (
        state.stored_status == state.scaleset["status"]
        and state.stored_status is not state.scaleset["status"]
    )


def test_the_final_status_is_the_change_from_what_was_read_and_nothing_when_nothing_changed() -> None:
    kube, state = setup()
    updater = StatusUpdater(kube)
    assert updater.write(state, {"replicas": 3, "upgrade": {"phase": "Idle"}}) is False
    assert kube.calls == []
    assert updater.write(state, {"replicas": 2, "upgrade": {}}) is True
    assert patches(kube) == [
        {"metadata": {"resourceVersion": "7"}, "status": {"replicas": 2, "upgrade": {"phase": None}}}
    ]


def test_the_final_status_is_applied_again_when_only_metadata_changed_since_it_was_read() -> None:
    kube, state = setup(409)
    someone_else_writes(kube)
    assert StatusUpdater(kube).write(state, {**BEFORE, "replicas": 2}) is True
    assert [c.method for c in kube.calls] == ["PATCH", "GET", "PATCH"]
    assert [p["metadata"]["resourceVersion"] for p in patches(kube)] == ["7", "9"]
    assert patches(kube)[0]["status"] == patches(kube)[1]["status"] == {"replicas": 2}
    assert state.resource_version == "10" and state.stored_status["replicas"] == 2


def test_a_final_status_another_writer_changed_since_ends_the_pass() -> None:
    kube, state = setup(409)
    someone_else_writes(kube, {**BEFORE, **BATCH})
    with pytest.raises(Conflict):
        StatusUpdater(kube).write(state, {**BEFORE, "replicas": 2})
    assert [c.method for c in kube.calls] == ["PATCH", "GET"], "nothing overwrites the other writer's status"


def test_the_final_status_gives_up_after_its_attempts() -> None:
    kube, state = setup(*[409] * WRITE_ATTEMPTS)
    with pytest.raises(Conflict):
        StatusUpdater(kube).write(state, {**BEFORE, "replicas": 2})
    assert len(patches(kube)) == WRITE_ATTEMPTS


def record(updater: StatusUpdater, state: Snapshot) -> None:
    updater.record(state, BATCH)


def write(updater: StatusUpdater, state: Snapshot) -> None:
    updater.write(state, {**BEFORE, **BATCH})


@pytest.mark.parametrize(
    "verb,refused,raised,sent",
    [
        (record, (), None, ["PATCH"]),
        (write, (), None, ["PATCH"]),
        # The record is a decision from the read: a 409 is never retried.
        (record, (409,), Conflict, ["PATCH"]),
        # The final status is what the pass saw: nobody wrote the status since, so it goes in again.
        (write, (409,), None, ["PATCH", "GET", "PATCH"]),
        # The ScaleSet deleted during the pass: once, whichever write meets it.
        (record, (404,), ScaleSetGone, ["PATCH"]),
        (write, (404,), ScaleSetGone, ["PATCH"]),
        # A refusal retrying cannot lift goes to the pass, which reports it.
        (record, (422,), ApiError, ["PATCH"]),
        (write, (422,), ApiError, ["PATCH"]),
    ],
)
def test_each_answer_is_handled_in_one_place(
    verb: Callable[[StatusUpdater, Snapshot], None],
    refused: tuple[int, ...],
    raised: type[Exception] | None,
    sent: list[str],
) -> None:
    kube, state = setup(*refused)
    if raised is None:
        verb(StatusUpdater(kube), state)
    else:
        with pytest.raises(raised):
            verb(StatusUpdater(kube), state)
    assert [c.method for c in kube.calls] == sent


def test_a_scaleset_gone_when_read_again_after_a_conflict_is_gone() -> None:
    kube, state = setup(409)
    kube.refuse("GET", SCALESET_PATH, 404)
    with pytest.raises(ScaleSetGone):
        StatusUpdater(kube).write(state, {**BEFORE, "replicas": 2})


@pytest.mark.parametrize("refused", [(), (404,)])
def test_a_refusals_conditions_are_written_unguarded_and_a_scaleset_gone_is_left_alone(
    refused: tuple[int, ...],
) -> None:
    kube, _ = setup(*refused)
    conditions = {"conditions": [{"type": "Stalled", "status": "True"}], "observedGeneration": 1}
    StatusUpdater(kube).report(scaleset(BEFORE), conditions)
    assert patches(kube) == [{"status": conditions}]
