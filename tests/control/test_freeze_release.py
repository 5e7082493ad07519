"""Labelling a frozen node `ready`: only a node still asking for a freeze, and a node changed since the pass
read it (the test of the JSON patch fails, 422, or a 409) ends the pass, for the next one to read again."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import snapshot

from scaleset_operator.control.context import Conflict
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.maintenance import MaintenanceActor
from scaleset_operator.identity import ANNOTATION_FROZEN_ON
from scaleset_operator.planning.host_maintenance import MAINTENANCE_FREEZE, MAINTENANCE_READY

NODE = "/api/v1/nodes/node-1"
EVENTS = "/api/v1/namespaces/shop/events"


def frozen_pod(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "shop", "annotations": {ANNOTATION_FROZEN_ON: "node-1"}}}


def actor(kube: FakeKube) -> MaintenanceActor:
    events = EventRecorder(kube)
    return MaintenanceActor(kube, events, InstanceControl(kube, events))


def fake(*refused: int) -> FakeKube:
    kube = FakeKube({"/api/v1/pods": {"items": [frozen_pod("web-0"), frozen_pod("db-0")]}})
    for status in refused:
        kube.refuse("PATCH", NODE, status)
    return kube


def test_a_node_every_instance_agreed_to_is_labelled_ready_only_if_it_still_asks_for_a_freeze() -> None:
    kube = fake()
    actor(kube)._release_frozen(snapshot(), "node-1")
    (patch,) = [c for c in kube.calls if c.path == NODE]
    assert patch.method == "PATCH"
    assert [op["op"] for op in patch.body] == ["test", "replace"]
    assert [op["value"] for op in patch.body] == [MAINTENANCE_FREEZE, MAINTENANCE_READY]
    assert [c.body["reason"] for c in kube.calls if c.path == EVENTS] == ["HostFreezeReady"]


@pytest.mark.parametrize("status", [409, 422])
def test_a_node_changed_since_it_was_read_ends_the_pass(status: int) -> None:
    kube = fake(status)
    with pytest.raises(Conflict, match="node node-1 changed"):
        actor(kube)._release_frozen(snapshot(), "node-1")
    assert [c.path for c in kube.calls if c.method != "GET"] == [NODE], "nothing is written after it"


def test_a_node_gone_is_left_alone() -> None:
    kube = fake(404)
    actor(kube)._release_frozen(snapshot(), "node-1")
    assert [c.path for c in kube.calls if c.method != "GET"] == [NODE]


def test_a_node_with_an_instance_that_has_not_agreed_is_not_touched() -> None:
    kube = FakeKube({"/api/v1/pods": {"items": [frozen_pod("web-0"), {"metadata": {"name": "db-0"}}]}})
    actor(kube)._release_frozen(snapshot(), "node-1")
    assert kube.writes() == []
