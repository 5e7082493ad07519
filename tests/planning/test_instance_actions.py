"""The actions for a batch's members, as values: what a live pod can take in place (container images,
labels, annotations) is patched, anything else is a reimage; with maxSurge the surge pod comes first
and the member moves only once it is healthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scaleset_operator.api.models import UpdateMethod
from scaleset_operator.planning.instance_actions import (
    BatchPlan,
    Member,
    Reimage,
    Surge,
    UpdateInPlace,
    plan_batch,
    update_kind,
)
from scaleset_operator.planning.instances import HealthGate, InstanceState
from scaleset_operator.planning.revisions import UpdateKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OLD: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {
        "initContainers": [{"name": "init", "image": "init:v1"}],
        "containers": [{"name": "os", "image": "app:v1"}, {"name": "log", "image": "log:v1"}],
    },
}


def changed(**edits: Any) -> dict[str, Any]:
    spec = dict(OLD["spec"])
    metadata = dict(OLD["metadata"])
    if "image" in edits:
        spec["containers"] = [{"name": "os", "image": edits["image"]}, OLD["spec"]["containers"][1]]
    if "init_image" in edits:
        spec["initContainers"] = [{"name": "init", "image": edits["init_image"]}]
    if "containers" in edits:
        spec["containers"] = edits["containers"]
    if "annotations" in edits:
        metadata["annotations"] = edits["annotations"]
    if "node_selector" in edits:
        spec["nodeSelector"] = edits["node_selector"]
    if "env" in edits:
        spec["containers"] = [{"name": "os", "image": "app:v1", "env": edits["env"]}, spec["containers"][1]]
    return {"metadata": metadata, "spec": spec}


@pytest.mark.parametrize(
    "new,kind",
    [
        (OLD, UpdateKind.NONE),
        (changed(image="app:v2"), UpdateKind.IN_PLACE),  # a container's image: the kubelet restarts it
        (changed(annotations={"note": "x"}), UpdateKind.IN_PLACE),  # pod metadata is mutable
        (changed(init_image="init:v2"), UpdateKind.REIMAGE),  # a finished init container never re-runs
        (changed(env=[{"name": "A", "value": "1"}]), UpdateKind.REIMAGE),  # env of a live pod is immutable
        (changed(node_selector={"zone": "a"}), UpdateKind.REIMAGE),
        (changed(containers=[{"name": "os", "image": "app:v1"}]), UpdateKind.REIMAGE),  # a container removed
        (
            changed(containers=[OLD["spec"]["containers"][1], OLD["spec"]["containers"][0]]),
            UpdateKind.REIMAGE,  # containers reordered: matched by index on a pod update
        ),
    ],
)
def test_what_a_live_pod_can_take_is_updated_in_place(new: dict[str, Any], kind: UpdateKind) -> None:
    assert update_kind(OLD, new, UpdateMethod.IN_PLACE_IF_POSSIBLE, "os") == kind


def test_the_policy_or_an_unknown_revision_makes_every_update_a_reimage() -> None:
    new = changed(image="app:v2")
    assert update_kind(OLD, new, UpdateMethod.REIMAGE, "os") == UpdateKind.REIMAGE
    assert update_kind(None, new, UpdateMethod.IN_PLACE_IF_POSSIBLE, "os") == UpdateKind.REIMAGE


def member(ordinal: int, revision: str = "web-old", *, terminating: bool = False) -> Member:
    return Member(ordinal, revision, terminating, OLD)


def healthy(ordinal: int) -> InstanceState:
    return InstanceState(
        f"web-{ordinal}", ordinal, "web-new", ready=True, ready_since=NOW - timedelta(hours=1)
    )


def not_ready(ordinal: int) -> InstanceState:
    return InstanceState(f"web-{ordinal}", ordinal, "web-new", ready=False)


def plan(
    members: list[Member],
    new: dict[str, Any],
    *,
    max_surge: bool = False,
    surges: dict[int, InstanceState] | None = None,
    replicas: int = 3,
) -> BatchPlan:
    return plan_batch(
        members,
        replicas=replicas,
        update_revision="web-new",
        target_template=new,
        method=UpdateMethod.IN_PLACE_IF_POSSIBLE,
        os_container="os",
        max_surge=max_surge,
        surges=surges or {},
        gate=HealthGate(),
        now=NOW,
    )


def test_each_member_not_there_yet_is_patched_or_reimaged_by_what_changed() -> None:
    assert plan([member(0), member(1)], changed(image="app:v2")) == BatchPlan(
        (UpdateInPlace(0, "web-new", reboots=True), UpdateInPlace(1, "web-new", reboots=True)), frozenset()
    )
    assert plan([member(0)], changed(init_image="init:v2")).actions == (Reimage(0, "web-new"),)


def test_an_update_of_metadata_only_reboots_nothing() -> None:
    assert plan([member(0)], changed(annotations={"note": "x"})).actions == (
        UpdateInPlace(0, "web-new", reboots=False),
    )


def test_members_updated_going_or_above_replicas_are_left_alone() -> None:
    members = [member(0, "web-new"), member(1, terminating=True), member(3)]
    assert plan(members, changed(image="app:v2")) == BatchPlan((), frozenset())


def test_with_max_surge_the_surge_comes_first_and_the_member_moves_once_it_is_healthy() -> None:
    new = changed(image="app:v2")
    members = [member(0), member(1), member(2)]
    surges = {1: not_ready(1), 2: healthy(2)}
    assert plan(members, new, max_surge=True, surges=surges) == BatchPlan(
        (Surge(0, "web-new"), UpdateInPlace(2, "web-new", reboots=True)), frozenset({0, 1, 2})
    )


def test_a_surge_is_kept_for_a_member_already_updated() -> None:
    assert plan([member(0, "web-new")], changed(image="app:v2"), max_surge=True) == BatchPlan(
        (), frozenset({0})
    )
