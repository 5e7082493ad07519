"""Maintenance on a live API: the windows a ScaleSet is subject to, and instances moved off nodes under maintenance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scaleset_operator.control.kube import Kube, core_path, fleet_path
from tests.integration.helpers import (
    PodSampler,
    create,
    is_ready,
    pods_of,
    scaleset_body,
    scaleset_ready,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60
LABEL = "fleet.scaleset.dev/maintenance"


def configuration(name: str, scope: str, selector: dict[str, str], start: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "MaintenanceConfiguration",
        "metadata": {"name": name},
        "spec": {
            "maintenanceScope": scope,
            "window": {
                "startDateTime": start.strftime("%Y-%m-%d %H:%M"),
                "duration": "02:00",
                "timeZone": "UTC",
                "recurEvery": "Week",
            },
            "assignment": {"scaleSetSelector": {"matchLabels": selector}},
        },
    }


@pytest.fixture
def configurations(kube: Kube) -> Iterator[list[str]]:
    """MaintenanceConfigurations are cluster-scoped: whatever a test creates goes at its end."""
    created: list[str] = []
    yield created
    for name in created:
        kube.delete(fleet_path("maintenanceconfigurations", name=name))


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
            fleet_path("maintenanceconfigurations"), configuration(name, scope, {"window": tag}, start)
        )
        configurations.append(name)
    kube.create(
        fleet_path("maintenanceconfigurations"),
        configuration(f"other-{tag}", "OSImage", {"window": "nope"}, start),
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
    with PodSampler(kube, namespace, "web") as sampler:
        kube.patch(core_path("nodes", name=node), {"spec": {"unschedulable": True}})
        wait_for(lambda: not on_node(kube, namespace, node), TIMEOUT, f"every instance off {node}")

        # The last instance to leave may still be on its way back when the node is empty, and the
        # status may say Ready from before: wait for all six back and ready.
        def all_back() -> bool:
            pods = pods_of(kube, namespace, "web")
            return (
                scaleset_ready(kube, namespace, "web") is not None
                and len(pods) == 6
                and all(is_ready(p) for p in pods)
            )

        wait_for(all_back, TIMEOUT, "web Ready again with its six instances")
    assert sorted(p["metadata"]["name"] for p in pods_of(kube, namespace, "web")) == sorted(
        f"web-{o}" for o in range(6)
    )
    assert {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    } == claims
    assert sampler.max_unavailable(6) <= 1, "more than one batch (20 % of 6: one instance) was down"
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


def test_host_work_waits_for_its_window(
    kube: Kube, namespace: str, configurations: list[str], restore_nodes: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    kube.create(
        fleet_path("maintenanceconfigurations"),
        configuration(f"host-{tag}", "Host", {"window": tag}, datetime.now(UTC) + timedelta(days=2)),
    )
    configurations.append(f"host-{tag}")
    body = scaleset_body("web", 4)
    body["metadata"]["labels"] = {"window": tag}
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    node = node_of(kube, namespace, "web-0")
    staying = on_node(kube, namespace, node)
    kube.patch(core_path("nodes", name=node), {"spec": {"unschedulable": True}})
    host = wait_for(
        lambda: (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
            "hostMaintenance"
        ),
        TIMEOUT,
        "status.hostMaintenance",
    )
    wait_for(
        lambda: (
            (kube.get(fleet_path("scalesets", namespace, "web"))["status"]["hostMaintenance"]).get("reason")
            == "WaitingForMaintenanceWindow"
        ),
        TIMEOUT,
        "the wait for the Host window",
    )
    host = kube.get(fleet_path("scalesets", namespace, "web"))["status"]["hostMaintenance"]
    assert f"host-{tag}" in host["message"]
    assert sorted(host["waiting"]) == staying
    assert on_node(kube, namespace, node) == staying, "nothing moves outside the window"
