"""A finished pod replaced by the pass: created again with its name, and, on the revision it ran, with the
time it was put on that revision, so that its start timeout runs on instead of starting from zero."""

from __future__ import annotations

from typing import Any

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import T0, pod, snapshot

from scaleset_operator.control.context import Outcome, timestamp_precise
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.identity import ANNOTATION_UPDATED_AT
from scaleset_operator.planning.instances import parse_time

PODS = "/api/v1/namespaces/shop/pods"
UPDATED = "2026-03-01T11:00:00.250000Z"


def replaced(failed: dict[str, Any], update_revision: str) -> dict[str, Any]:
    """The pod the pass creates for `failed`, after deleting it."""
    kube = FakeKube()
    state = snapshot({0: failed}, revision=update_revision)
    InstanceControl(kube, EventRecorder(kube)).scale(state, T0, Outcome())
    assert [c.method for c in kube.writes() if c.path.startswith(PODS)] == ["DELETE", "POST"]
    (created,) = [c.body for c in kube.calls if c.method == "POST" and c.path == PODS]
    return created


@pytest.mark.parametrize(
    "failed,update_revision,updated_at",
    [
        # On its own revision: the time it was updated stays.
        (pod(0, "web-1", phase="Failed", updated_at=UPDATED), "web-1", UPDATED),
        (pod(0, "web-1", phase="Succeeded", updated_at=UPDATED), "web-1", UPDATED),
        # Made before the annotation existed: its creation was its update.
        (pod(0, "web-1", phase="Failed"), "web-1", "2026-03-01T10:00:00Z"),
        # Created again on another revision: that is an update, now.
        (pod(0, "web-0", phase="Failed", updated_at=UPDATED), "web-1", timestamp_precise(T0)),
    ],
)
def test_a_finished_pod_comes_back_with_the_time_it_was_put_on_its_revision(
    failed: dict[str, Any], update_revision: str, updated_at: str
) -> None:
    created = replaced(failed, update_revision)
    assert created["metadata"]["name"] == "web-0"
    assert created["metadata"]["annotations"][ANNOTATION_UPDATED_AT] == updated_at


def test_a_missing_instance_is_created_as_updated_now() -> None:
    kube = FakeKube()
    InstanceControl(kube, EventRecorder(kube)).scale(snapshot({}), T0, Outcome())
    (created,) = [c.body for c in kube.calls if c.method == "POST" and c.path == PODS]
    assert parse_time(created["metadata"]["annotations"][ANNOTATION_UPDATED_AT]) == T0
