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
    RevertDrift,
    Surge,
    UpdateInPlace,
    drift_of,
    leaving_ordinals,
    missing_ordinals,
    plan_batch,
    revision_for_new_instance,
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


def new_revision(
    ordinal: int,
    *,
    batch: frozenset[int] = frozenset(),
    batch_domain: int | None = None,
    automatic_locked: bool = False,
    restarted_on: str | None = None,
    current: str = "web-old",
) -> str:
    return revision_for_new_instance(
        ordinal,
        current_revision=current,
        update_revision="web-new",
        batch=batch,
        batch_domain=batch_domain,
        domain_count=5,
        automatic_locked=automatic_locked,
        restarted_on=restarted_on,
    )


@pytest.mark.parametrize(
    "ordinal,kwargs,revision",
    [
        (4, {"current": "web-new"}, "web-new"),  # no upgrade: the one revision
        (4, {}, "web-old"),  # the rollout has not reached it
        (2, {"batch": frozenset({2})}, "web-new"),  # a member of the batch
        (1, {"batch": frozenset({2}), "batch_domain": 2}, "web-new"),  # a domain the rollout passed
        (3, {"batch": frozenset({2}), "batch_domain": 2}, "web-old"),  # a domain still ahead
        (4, {"automatic_locked": True}, "web-new"),  # Automatic: every instance at once
        (2, {"batch": frozenset({2}), "restarted_on": "web-old"}, "web-old"),  # a restart: as it ran
    ],
)
def test_a_missing_instance_comes_back_on_the_revision_the_rollout_reached_for_it(
    ordinal: int, kwargs: dict[str, Any], revision: str
) -> None:
    assert new_revision(ordinal, **kwargs) == revision


def test_scale_out_creates_the_missing_ordinals_lowest_first() -> None:
    assert missing_ordinals(5, {0, 2}) == (1, 3, 4)
    assert missing_ordinals(2, {0, 1, 2}) == ()


def test_scale_in_removes_the_ordinals_above_replicas_highest_first() -> None:
    assert leaving_ordinals(2, {0: False, 1: False, 2: False, 3: True, 4: False}) == (4, 2)
    assert leaving_ordinals(5, {0: False, 4: False}) == ()


IDENTITY = {"scaleset": "web", "ordinal": "0"}
RUNNING = {"os": "app:v1", "log": "log:v1"}


@pytest.mark.parametrize(
    "labels,images,domain,drift",
    [
        (IDENTITY, RUNNING, None, None),  # nothing changed
        ({**IDENTITY, "ordinal": "7"}, RUNNING, None, RevertDrift(0, {"ordinal": "0"}, ())),
        ({"scaleset": "web"}, RUNNING, None, RevertDrift(0, {"ordinal": "0"}, ())),
        (IDENTITY, {**RUNNING, "os": "evil:1"}, None, RevertDrift(0, {}, (("os", "app:v1"),))),
        (IDENTITY, {"os": "app:v1"}, None, None),  # a container it does not run is not drift
        (IDENTITY, RUNNING, ("domain", "0"), RevertDrift(0, {"domain": "0"}, ())),
        ({**IDENTITY, "domain": "0"}, RUNNING, ("domain", "0"), None),
    ],
)
def test_a_foreign_edit_of_identity_labels_or_images_is_reverted(
    labels: dict[str, str], images: dict[str, str], domain: tuple[str, str] | None, drift: RevertDrift | None
) -> None:
    assert drift_of(0, labels, images, OLD, identity=IDENTITY, domain_label=domain) == drift


def test_without_a_known_revision_only_labels_are_reverted() -> None:
    assert drift_of(0, IDENTITY, {"os": "evil:1"}, None, identity=IDENTITY, domain_label=None) is None
