"""Scheduled events in a rollout, a scale-in and a node freeze: announced before the work, approved by the
instance alone.

The instances call the endpoint as the cloud service's documentation shows: plain HTTP, the header
`Metadata: true`, `StartRequests` to approve, from their own address (kubesim's pods have loopback
addresses, so a client binds its source address to the pod's IP).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scaleset_operator.control.kube import Kube, core_path, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.helpers import (
    IMAGE,
    create,
    pods_of,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

TIMEOUT = 60
PATH = "/metadata/scheduledevents?api-version=2020-07-01"


@pytest.fixture(autouse=True)
def needs_kubesim(kubesim: Any) -> None:
    if kubesim is None:
        pytest.skip("calls the endpoint from pod IPs, which only kubesim's loopback pod addresses allow here")


def call(operator: OperatorThread, source_ip: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    host, port = str(operator.scheduled_events_address).rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source_ip, 0))
    try:
        connection.request(
            method, PATH, body=None if body is None else json.dumps(body), headers={"Metadata": "true"}
        )
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def ip_of(kube: Kube, namespace: str, pod: str) -> str:
    return str(kube.get(core_path("pods", namespace, pod))["status"]["podIP"])


def image_of(kube: Kube, namespace: str, pod: str) -> str:
    return str(kube.get(core_path("pods", namespace, pod))["spec"]["containers"][0]["image"])


def events_seen_by(operator: OperatorThread, kube: Kube, namespace: str, pod: str) -> list[dict[str, Any]]:
    status, document = call(operator, ip_of(kube, namespace, pod))
    assert status == 200, document
    return list(document["Events"])


def upgrade_of(kube: Kube, namespace: str) -> dict[str, Any]:
    return dict(
        (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get("upgrade") or {}
    )


def fleet(kube: Kube, namespace: str, timeout: str) -> None:
    create(
        kube,
        namespace,
        scaleset_body("web", 4, scheduledEvents={"enabled": True, "notBeforeTimeout": timeout}),
    )
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")


def test_an_instance_that_approves_its_reboot_is_updated_at_once(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    fleet(kube, namespace, "10m")
    assert all(
        any(e.get("name") == "SCHEDULED_EVENTS_ENDPOINT" for e in p["spec"]["containers"][0].get("env") or [])
        for p in pods_of(kube, namespace, "web")
    ), "every instance is told where the endpoint is"
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    (event,) = wait_for(
        lambda: events_seen_by(operator, kube, namespace, "web-0"), TIMEOUT, "web-0 told of its reboot"
    )
    assert event["EventType"] == "Reboot" and event["Resources"] == ["web-0"]
    assert event["EventStatus"] == "Scheduled" and event["NotBefore"].endswith("GMT")
    upgrade = wait_for(
        lambda: (u := upgrade_of(kube, namespace)).get("reason") == "WaitingForApproval" and u,
        TIMEOUT,
        "the wait",
    )
    assert upgrade["currentBatch"]["scheduledEvents"]["waitingFor"] == ["web-0"]
    time.sleep(1.0)
    assert image_of(kube, namespace, "web-0") == f"{IMAGE}:v1", "nothing is touched before the event is due"

    # Another instance neither sees the event nor may approve it.
    assert events_seen_by(operator, kube, namespace, "web-1") == []
    refused, _ = call(
        operator, ip_of(kube, namespace, "web-1"), "POST", {"StartRequests": [{"EventId": event["EventId"]}]}
    )
    assert refused == 403
    time.sleep(0.5)
    assert image_of(kube, namespace, "web-0") == f"{IMAGE}:v1"

    approved, _ = call(
        operator, ip_of(kube, namespace, "web-0"), "POST", {"StartRequests": [{"EventId": event["EventId"]}]}
    )
    assert approved == 200
    wait_for(
        lambda: image_of(kube, namespace, "web-0") == f"{IMAGE}:v2",
        10,
        "the approved update to start at once",
    )
    # Once the instance is back, its event is gone.
    wait_for(
        lambda: events_seen_by(operator, kube, namespace, "web-0") == [], TIMEOUT, "the event to disappear"
    )


def test_an_instance_that_does_not_approve_is_updated_at_not_before(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    fleet(kube, namespace, "4s")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(lambda: events_seen_by(operator, kube, namespace, "web-0"), TIMEOUT, "web-0 told of its reboot")
    told = time.monotonic()
    wait_for(lambda: image_of(kube, namespace, "web-0") == f"{IMAGE}:v2", 20, "the update at NotBefore")
    waited = time.monotonic() - told
    # NotBefore is stamped to the second, so the wait is between 3 and 4 seconds, plus reaction time.
    assert waited >= 2.5, f"the update started {waited:.1f}s after the notice, before NotBefore"


def test_scale_in_announces_a_terminate_and_waits_for_it(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    fleet(kube, namespace, "4s")
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"replicas": 3}})
    (event,) = wait_for(lambda: events_seen_by(operator, kube, namespace, "web-3"), TIMEOUT, "web-3 told")
    told = time.monotonic()
    assert event["EventType"] == "Terminate" and event["Resources"] == ["web-3"]
    wait_for(lambda: len(pods_of(kube, namespace, "web")) == 3, 20, "web-3 removed at NotBefore")
    assert time.monotonic() - told >= 2.5


def test_scaleset_approve_approves_an_instances_event_on_its_behalf(
    kube: Kube, namespace: str, operator: OperatorThread, kubeconfig: str
) -> None:
    from typer.testing import CliRunner

    from scaleset_operator.cli.main import app

    fleet(kube, namespace, "10m")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(lambda: events_seen_by(operator, kube, namespace, "web-0"), TIMEOUT, "web-0 told of its reboot")
    args = ["-n", namespace, "--kubeconfig", kubeconfig]
    unknown = CliRunner().invoke(app, ["approve", "web-0", "--event", "NO-SUCH-EVENT", *args])
    assert unknown.exit_code == 2 and "no scheduled event NO-SUCH-EVENT" in unknown.output
    missing = CliRunner().invoke(app, ["approve", "web-99", *args])
    assert missing.exit_code == 2 and 'instance "web-99" not found' in missing.output
    approved = CliRunner().invoke(app, ["approve", "web-0", *args])
    assert approved.exit_code == 0, approved.output
    assert "Approved event" in approved.output
    wait_for(
        lambda: image_of(kube, namespace, "web-0") == f"{IMAGE}:v2",
        10,
        "the approved update to start at once",
    )


MAINTENANCE = "fleet.scaleset.dev/maintenance"


@pytest.fixture
def frozen_nodes(kube: Kube) -> Iterator[list[str]]:
    """Nodes a test labels for a freeze lose the label at its end: nodes are shared by the session."""
    labelled: list[str] = []
    yield labelled
    for node in labelled:
        kube.patch(core_path("nodes", name=node), {"metadata": {"labels": {MAINTENANCE: None}}})


def freeze_node_of(kube: Kube, namespace: str, pod: str, labelled: list[str]) -> tuple[str, list[str]]:
    """Label the node of `pod` for a freeze; (the node, the instances of web on it)."""
    node = str(kube.get(core_path("pods", namespace, pod))["spec"]["nodeName"])
    on_node = sorted(
        p["metadata"]["name"] for p in pods_of(kube, namespace, "web") if p["spec"].get("nodeName") == node
    )
    labelled.append(node)
    kube.patch(core_path("nodes", name=node), {"metadata": {"labels": {MAINTENANCE: "freeze"}}})
    return node, on_node


def maintenance_label(kube: Kube, node: str) -> str | None:
    return (kube.get(core_path("nodes", name=node))["metadata"].get("labels") or {}).get(MAINTENANCE)


def placement(kube: Kube, namespace: str) -> dict[str, tuple[str, str]]:
    return {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]["nodeName"])
        for p in pods_of(kube, namespace, "web")
    }


def test_a_node_freeze_is_announced_to_its_instances_and_answered_when_they_approve(
    kube: Kube, namespace: str, operator: OperatorThread, frozen_nodes: list[str]
) -> None:
    fleet(kube, namespace, "10m")
    before = placement(kube, namespace)
    node, on_node = freeze_node_of(kube, namespace, "web-0", frozen_nodes)
    told = {
        name: wait_for(lambda n=name: events_seen_by(operator, kube, namespace, n), TIMEOUT, f"{name} told")
        for name in on_node
    }
    for name, events in told.items():
        (event,) = events
        assert (event["EventType"], event["Resources"], event["EventStatus"]) == (
            "Freeze",
            [name],
            "Scheduled",
        )
    elsewhere = sorted(set(before) - set(on_node))
    assert all(events_seen_by(operator, kube, namespace, name) == [] for name in elsewhere)
    time.sleep(1.0)
    assert maintenance_label(kube, node) == "freeze", "the node waits while an instance has not agreed"

    for name, (event,) in told.items():
        status, _ = call(
            operator, ip_of(kube, namespace, name), "POST", {"StartRequests": [{"EventId": event["EventId"]}]}
        )
        assert status == 200
    wait_for(lambda: maintenance_label(kube, node) == "ready", TIMEOUT, f"{node} labelled ready")
    for name in on_node:
        (event,) = events_seen_by(operator, kube, namespace, name)
        assert event["EventStatus"] == "Started", "the freeze is under way while the node tool works"
    assert placement(kube, namespace) == before, "a freeze moves no instance"
    reasons = {
        e["reason"] for e in kube.list(core_path("events", namespace)) if e["involvedObject"]["name"] == "web"
    }
    assert {"HostFreeze", "HostFreezeReady"} <= reasons

    # The node tool is done: it takes the label away, and the events go.
    kube.patch(core_path("nodes", name=node), {"metadata": {"labels": {MAINTENANCE: None}}})
    for name in on_node:
        wait_for(
            lambda n=name: events_seen_by(operator, kube, namespace, n) == [],
            TIMEOUT,
            f"{name}'s event to go",
        )
    assert placement(kube, namespace) == before


def test_a_node_freeze_goes_ahead_at_not_before_when_no_instance_approves(
    kube: Kube, namespace: str, operator: OperatorThread, frozen_nodes: list[str]
) -> None:
    fleet(kube, namespace, "4s")
    before = placement(kube, namespace)
    node, on_node = freeze_node_of(kube, namespace, "web-0", frozen_nodes)
    wait_for(lambda: events_seen_by(operator, kube, namespace, on_node[0]), TIMEOUT, f"{on_node[0]} told")
    told = time.monotonic()
    wait_for(lambda: maintenance_label(kube, node) == "ready", 20, f"{node} labelled ready at NotBefore")
    # NotBefore is stamped to the second, so the wait is between 3 and 4 seconds, plus reaction time.
    assert time.monotonic() - told >= 2.5
    assert placement(kube, namespace) == before
