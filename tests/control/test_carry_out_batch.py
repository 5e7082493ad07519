"""The batch's actions as requests: an update in place is a strategic-merge patch of the pod's images
and revision label, a reimage an eviction fenced by the pod's uid and resourceVersion, a surge a new pod
created first; a refused precondition (409) ends the pass to read again, a refused patch (422) is the
user's template."""

from __future__ import annotations

from typing import Any

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import T0, TEMPLATE, pod, snapshot

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.control.context import Conflict, InvalidInput, Outcome, Snapshot
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.identity import LABEL_REVISION

PODS = "/api/v1/namespaces/shop/pods"
NEW_IMAGE = {"spec": {"containers": [{"name": "os", "image": "app:v2"}]}}
NEW_ENV = {"spec": {"containers": [{"name": "os", "image": "app:v1", "env": [{"name": "A", "value": "1"}]}]}}


def batch_of(new: dict[str, Any], *, surge: bool = False, surges: dict[int, Any] | None = None) -> Snapshot:
    state = snapshot(
        {0: pod(0, "web-0")},
        revision="web-1",
        status={"upgrade": {"locked": True, "currentBatch": {"instances": ["web-0"]}}},
        revisions={"web-0": {"data": {"template": TEMPLATE}}, "web-1": {"data": {"template": new}}},
    )
    state.scaleset["status"] = state.stored_status
    state.current_revision = "web-0"
    state.policy = UpgradePolicySpec.model_validate({"rollingUpgrade": {"maxSurge": surge}})
    state.surges = surges or {}
    return state


def carry_out(kube: FakeKube, state: Snapshot) -> Outcome:
    outcome = Outcome()
    InstanceControl(kube, EventRecorder(kube)).carry_out_batch(state, [], T0, outcome)
    return outcome


def pod_writes(kube: FakeKube) -> list[tuple[str, str]]:
    """The writes to pods after the dry-run check of the template."""
    return [(c.method, c.path) for c in kube.writes() if c.path.startswith(PODS) and not c.query]


def test_a_new_image_is_patched_onto_the_live_pod() -> None:
    kube = FakeKube()
    carry_out(kube, batch_of(NEW_IMAGE))
    assert pod_writes(kube) == [("PATCH", f"{PODS}/web-0")]
    (patch,) = [c.body for c in kube.calls if c.method == "PATCH"]
    assert patch["spec"] == {"containers": [{"name": "os", "image": "app:v2"}]}
    assert patch["metadata"]["labels"][LABEL_REVISION] == "web-1"


def test_a_change_a_live_pod_cannot_take_evicts_it_as_read() -> None:
    kube = FakeKube()
    carry_out(kube, batch_of(NEW_ENV))
    assert pod_writes(kube) == [("POST", f"{PODS}/web-0/eviction")]
    (eviction,) = [c.body for c in kube.calls if c.path.endswith("/eviction")]
    assert eviction["deleteOptions"]["preconditions"] == {"uid": "uid-pod-0", "resourceVersion": "20"}


def test_with_max_surge_the_surge_pod_is_created_and_the_instance_waits() -> None:
    kube = FakeKube()
    state = batch_of(NEW_IMAGE, surge=True)
    carry_out(kube, state)
    assert pod_writes(kube) == [("POST", PODS)]
    (created,) = [c.body for c in kube.calls if c.method == "POST" and c.path == PODS and not c.query]
    assert created["metadata"]["labels"][LABEL_REVISION] == "web-1"
    assert created["metadata"]["name"] != "web-0"
    assert 0 in state.surges


def test_an_eviction_refused_by_its_precondition_ends_the_pass() -> None:
    kube = FakeKube().refuse("POST", "/web-0/eviction", 409)
    with pytest.raises(Conflict):
        carry_out(kube, batch_of(NEW_ENV))


def test_a_patch_the_api_server_refuses_is_the_templates_fault() -> None:
    kube = FakeKube().refuse("PATCH", "/web-0", 422)
    with pytest.raises(InvalidInput):
        carry_out(kube, batch_of(NEW_IMAGE))


def test_a_pod_gone_before_its_patch_is_left_alone() -> None:
    kube = FakeKube().refuse("PATCH", "/web-0", 404)
    state = batch_of(NEW_IMAGE)
    carry_out(kube, state)
    assert state.pods[0]["metadata"]["labels"][LABEL_REVISION] == "web-0"
