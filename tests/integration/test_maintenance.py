"""Maintenance on a live API: the windows a ScaleSet is subject to, and instances moved off nodes under maintenance."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scaleset_operator.control.kube import Kube, core_path, fleet_path
from scaleset_operator.planning.instances import parse_time
from tests.integration.helpers import (
    ApiRecorder,
    PodSampler,
    condition,
    create,
    is_ready,
    maintenance_configuration,
    pods_of,
    scaleset_body,
    scaleset_ready,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60
LABEL = "fleet.scaleset.dev/maintenance"
FROZEN_ON = "fleet.scaleset.dev/frozen-on"


def node_of(kube: Kube, namespace: str, pod: str) -> str:
    return str(kube.get(core_path("pods", namespace, pod))["spec"]["nodeName"])


def on_node(kube: Kube, namespace: str, node: str) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in pods_of(kube, namespace, "web")
        if (p.get("spec") or {}).get("nodeName") == node and not p["metadata"].get("deletionTimestamp")
    )


@pytest.fixture
def restore_nodes(kube: Kube) -> Iterator[None]:
    yield
    for node in kube.list(core_path("nodes")):
        kube.patch(
            core_path("nodes", name=node["metadata"]["name"]),
            {"spec": {"unschedulable": None}, "metadata": {"labels": {LABEL: None}}},
        )


def test_status_names_the_configurations_that_apply_and_the_next_window(
    kube: Kube, namespace: str, configurations: list[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    start = datetime.now(UTC) + timedelta(days=2)
    for name, scope in ((f"os-{tag}", "OSImage"), (f"host-{tag}", "Host")):
        kube.create(
            fleet_path("maintenanceconfigurations"),
            maintenance_configuration(name, scope, {"window": tag}, start),
        )
        configurations.append(name)
    kube.create(
        fleet_path("maintenanceconfigurations"),
        maintenance_configuration(f"other-{tag}", "OSImage", {"window": "nope"}, start),
    )
    configurations.append(f"other-{tag}")
    body = scaleset_body("web", 2)
    body["metadata"]["labels"] = {"window": tag}
    create(kube, namespace, body)
    status = wait_for(
        lambda: (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get("maintenance"),
        TIMEOUT,
        "status.maintenance",
    )
    assert status["configurations"] == sorted([f"host-{tag}", f"os-{tag}"])
    windows = {w["scope"]: w for w in status["nextWindows"]}
    assert set(windows) == {"Host", "OSImage"}
    assert windows["OSImage"]["start"].startswith(start.strftime("%Y-%m-%dT%H:%M"))


def test_instances_leave_a_cordoned_node_one_batch_at_a_time_keeping_names_and_disks(
    kube: Kube, namespace: str, restore_nodes: None
) -> None:
    create(kube, namespace, scaleset_body("web", 6, claims=True))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    node = node_of(kube, namespace, "web-0")
    leaving = on_node(kube, namespace, node)
    claims = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }
    with PodSampler(kube, namespace, "web") as sampler, ApiRecorder(kube, namespace) as recorder:
        kube.patch(core_path("nodes", name=node), {"spec": {"unschedulable": True}})
        wait_for(lambda: not on_node(kube, namespace, node), TIMEOUT, f"every instance off {node}")
        # Ready alone may still be the status written in the pass that deleted the last batch.
        wait_for(
            lambda: (
                scaleset_ready(kube, namespace, "web")
                and sum(is_ready(p) for p in pods_of(kube, namespace, "web")) == 6
            ),
            TIMEOUT,
            "web Ready again with six ready instances",
        )
    assert sorted(p["metadata"]["name"] for p in pods_of(kube, namespace, "web")) == sorted(
        f"web-{o}" for o in range(6)
    )
    assert {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    } == claims
    assert sampler.max_unavailable(6) <= 1, "more than one batch (20 % of 6: one instance) was down"
    # Whenever status said Ready, all six instances were there and ready at that moment.
    for scaleset, pods in recorder.statuses_with_pods("web"):
        ready = condition(scaleset, "Ready")
        if ready and ready["status"] == "True":
            assert sum(is_ready(p) for p in pods) == 6, (
                scaleset["status"],
                [p["metadata"]["name"] for p in pods],
            )
    events = [e for e in kube.list(core_path("events", namespace)) if e["reason"] == "HostMaintenance"]
    assert {name for e in events for name in leaving if name in e["message"]} == set(leaving)


def test_a_node_labelled_for_maintenance_is_emptied_then_labelled_ready(
    kube: Kube, namespace: str, restore_nodes: None
) -> None:
    create(kube, namespace, scaleset_body("web", 6))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    node = node_of(kube, namespace, "web-1")
    kube.patch(core_path("nodes", name=node), {"metadata": {"labels": {LABEL: "pending"}}})
    wait_for(
        lambda: kube.get(core_path("nodes", name=node))["metadata"]["labels"].get(LABEL) == "ready",
        TIMEOUT,
        f"{node} labelled ready",
    )
    assert not on_node(kube, namespace, node)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready again")


def host_reason(kube: Kube, namespace: str) -> str | None:
    status = kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}
    return (status.get("hostMaintenance") or {}).get("reason")


def fleet_under_a_distant_host_window(
    kube: Kube, namespace: str, configurations: list[str], **spec: Any
) -> tuple[str, str]:
    """A ScaleSet of 4 under a Host window two days away: (tag, the node of web-0)."""
    tag = uuid.uuid4().hex[:8]
    kube.create(
        fleet_path("maintenanceconfigurations"),
        maintenance_configuration(
            f"host-{tag}", "Host", {"window": tag}, datetime.now(UTC) + timedelta(days=2), **spec
        ),
    )
    configurations.append(f"host-{tag}")
    scaleset = scaleset_body("web", 4)
    scaleset["metadata"]["labels"] = {"window": tag}
    create(kube, namespace, scaleset)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    return tag, node_of(kube, namespace, "web-0")


def cordon_under_a_distant_host_window(
    kube: Kube, namespace: str, configurations: list[str], **spec: Any
) -> tuple[str, str, list[str]]:
    """A ScaleSet under a Host window two days away, and the node of web-0 cordoned: (tag, node, instances on it)."""
    tag, node = fleet_under_a_distant_host_window(kube, namespace, configurations, **spec)
    staying = on_node(kube, namespace, node)
    kube.patch(core_path("nodes", name=node), {"spec": {"unschedulable": True}})
    return tag, node, staying


def test_host_work_waits_for_its_window(
    kube: Kube, namespace: str, configurations: list[str], restore_nodes: None
) -> None:
    tag, node, staying = cordon_under_a_distant_host_window(kube, namespace, configurations)
    wait_for(
        lambda: host_reason(kube, namespace) == "WaitingForMaintenanceWindow",
        TIMEOUT,
        "the wait for the Host window",
    )
    host = kube.get(fleet_path("scalesets", namespace, "web"))["status"]["hostMaintenance"]
    assert f"host-{tag}" in host["message"]
    assert sorted(host["waiting"]) == staying
    assert on_node(kube, namespace, node) == staying, "nothing moves outside the window"


def test_host_work_pending_past_max_deferral_goes_ahead_outside_the_window_with_a_warning(
    kube: Kube, namespace: str, configurations: list[str], restore_nodes: None
) -> None:
    tag, node, staying = cordon_under_a_distant_host_window(kube, namespace, configurations, maxDeferral="3s")
    wait_for(
        lambda: host_reason(kube, namespace) == "WaitingForMaintenanceWindow",
        TIMEOUT,
        "the wait for the Host window",
    )
    pending_since = kube.get(fleet_path("scalesets", namespace, "web"))["status"]["hostMaintenance"][
        "pendingSince"
    ]
    assert on_node(kube, namespace, node) == staying, "within maxDeferral nothing moves outside the window"
    wait_for(lambda: not on_node(kube, namespace, node), TIMEOUT, f"every instance off {node}")
    warning = next(
        e
        for e in kube.list(core_path("events", namespace))
        if e["reason"] == "MaxDeferralExceeded" and e["involvedObject"]["name"] == "web"
    )
    assert warning["type"] == "Warning"
    # Both are stamped to the second, and the gate counts from the stamped pendingSince.
    waited = parse_time(warning["firstTimestamp"]) - parse_time(pending_since)
    assert waited >= timedelta(seconds=3), f"the move started {waited} after the work became pending"
    assert "has waited longer than the maxDeferral of 3s" in warning["message"]
    assert f"host-{tag}" in warning["message"] and "outside a maintenance window" in warning["message"]
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready again")


def freeze_label(kube: Kube, node: str) -> str | None:
    return (kube.get(core_path("nodes", name=node))["metadata"].get("labels") or {}).get(LABEL)


def host_freeze(kube: Kube, namespace: str) -> dict[str, Any]:
    status = kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}
    return dict((status.get("hostMaintenance") or {}).get("freeze") or {})


def freeze_under_a_distant_host_window(
    kube: Kube, namespace: str, configurations: list[str], **spec: Any
) -> tuple[str, str]:
    """A ScaleSet under a Host window two days away, and the node of web-0 labelled for a freeze."""
    tag, node = fleet_under_a_distant_host_window(kube, namespace, configurations, **spec)
    kube.patch(core_path("nodes", name=node), {"metadata": {"labels": {LABEL: "freeze"}}})
    return tag, node


def test_a_freeze_waits_for_its_host_window_then_goes_inside_it(
    kube: Kube, namespace: str, configurations: list[str], restore_nodes: None
) -> None:
    tag, node = freeze_under_a_distant_host_window(kube, namespace, configurations)
    held = wait_for(lambda: host_freeze(kube, namespace), TIMEOUT, "the freeze waiting for the Host window")
    assert held["nodes"] == [node] and held["reason"] == "WaitingForMaintenanceWindow"
    assert f"host-{tag}" in held["message"]
    time.sleep(2)  # passes go by: no instance agrees to a freeze it was not told of, the node waits
    assert freeze_label(kube, node) == "freeze"
    assert not any(
        (p["metadata"].get("annotations") or {}).get(FROZEN_ON) for p in pods_of(kube, namespace, "web")
    )

    opened = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    kube.patch(
        fleet_path("maintenanceconfigurations", name=f"host-{tag}"),
        {"spec": {"window": {"startDateTime": opened}}},
    )
    wait_for(lambda: freeze_label(kube, node) == "ready", TIMEOUT, f"{node} labelled ready in the window")
    # The node is labelled during the pass; its status, without the waiting freeze, ends it.
    wait_for(lambda: host_freeze(kube, namespace) == {}, TIMEOUT, "no freeze waiting in status")


def test_a_freeze_pending_past_max_deferral_goes_outside_the_window_with_a_warning(
    kube: Kube, namespace: str, configurations: list[str], restore_nodes: None
) -> None:
    _, node = freeze_under_a_distant_host_window(kube, namespace, configurations, maxDeferral="4s")
    pending_since = wait_for(
        lambda: host_freeze(kube, namespace).get("pendingSince"), TIMEOUT, "the freeze waiting"
    )
    assert freeze_label(kube, node) == "freeze"
    wait_for(lambda: freeze_label(kube, node) == "ready", TIMEOUT, f"{node} labelled ready past maxDeferral")
    warning = next(
        e
        for e in kube.list(core_path("events", namespace))
        if e["reason"] == "MaxDeferralExceeded" and e["involvedObject"]["name"] == "web"
    )
    assert warning["type"] == "Warning" and "maxDeferral of 4s" in warning["message"]
    waited = parse_time(warning["firstTimestamp"]) - parse_time(pending_since)
    assert waited >= timedelta(seconds=4), f"the freeze went {waited} after it became pending"
