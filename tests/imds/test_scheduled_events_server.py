"""The scheduled-events endpoint, used as the public documentation of the cloud service describes it.

A client written against that documentation (plain http.client, `Metadata: true`, `StartRequests`)
connects from an instance's pod IP: kubesim gives pods loopback addresses, so binding the client's
source address to a pod IP makes it that instance.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaleset_operator.control.kube import Kube, core_path
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.imds.instances import KubeInstanceEvents
from scaleset_operator.imds.server import start_server
from scaleset_operator.planning.scheduled_events import (
    EVENTS_ANNOTATION,
    EventDocument,
    EventType,
    announce,
    decode,
    encode,
)
from tests.integration.helpers import wait_for

NAMESPACE = "default"
ROOT = Path(__file__).resolve().parents[2]
PATH = "/metadata/scheduledevents?api-version=2020-07-01"


@dataclass
class Setup:
    kube: Kube
    port: int
    ips: dict[str, str]
    kubeconfig: Path


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL_SCALESET: "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    }


class ServerThread:
    """The endpoint on its own event loop, as the operator runs it beside kopf."""

    def __init__(self, source: KubeInstanceEvents) -> None:
        self.source = source
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = self.loop.run_until_complete(start_server(self.source, "127.0.0.1:0"))
        self.port = runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from kubesim.cluster import ThreadedCluster

    path = tmp_path_factory.mktemp("kubesim") / "kubeconfig"
    with ThreadedCluster(nodes=1, time_scale=20.0, kubeconfig_path=str(path)) as cluster:
        kube = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
        for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
            kube.create(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(crd_file.read_text()),
            )
        for name in ("web-0", "web-1"):
            kube.create(core_path("pods", NAMESPACE), _pod(name))

        def ips() -> dict[str, str] | None:
            found = {
                n: (kube.get(core_path("pods", NAMESPACE, n)).get("status") or {}).get("podIP")
                for n in ("web-0", "web-1")
            }
            return found if all(found.values()) else None  # type: ignore[return-value]

        addresses = wait_for(ips, 20, "pod IPs")
        with ServerThread(KubeInstanceEvents(kube)) as server:
            yield Setup(kube, server.port, addresses, Path(cluster.kubeconfig_path))


def events_of(setup: Setup, pod: str) -> EventDocument:
    return decode(
        setup.kube.get(core_path("pods", NAMESPACE, pod))["metadata"]
        .get("annotations", {})
        .get(EVENTS_ANNOTATION)
    )


def put_events(setup: Setup, pod: str, document: EventDocument) -> None:
    setup.kube.patch(
        core_path("pods", NAMESPACE, pod),
        {"metadata": {"annotations": {EVENTS_ANNOTATION: encode(document)}}},
    )


def call(
    setup: Setup,
    source_ip: str,
    method: str = "GET",
    path: str = PATH,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", setup.port, timeout=10, source_address=(source_ip, 0)
    )
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(
            method, path, body=payload, headers={"Metadata": "true"} if headers is None else headers
        )
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


@pytest.fixture
def announced(setup: Setup) -> str:
    """A Reboot of web-0 announced fifteen minutes ahead; web-1 has no event."""
    document = announce(
        events_of(setup, "web-0"),
        event_id=f"EV-{datetime.now(UTC).timestamp()}",
        event_type=EventType.REBOOT,
        instance="web-0",
        now=datetime.now(UTC),
        description="Update of the OS image",
    )
    put_events(setup, "web-0", document)
    return document.events[-1].event_id


def test_an_instance_sees_its_own_events_in_the_services_format(setup: Setup, announced: str) -> None:
    status, document = call(setup, setup.ips["web-0"])
    assert status == 200
    assert document["DocumentIncarnation"] == events_of(setup, "web-0").incarnation
    (event,) = [e for e in document["Events"] if e["EventId"] == announced]
    assert event["EventType"] == "Reboot"
    assert event["ResourceType"] == "VirtualMachine"
    assert event["Resources"] == ["web-0"]
    assert event["EventStatus"] == "Scheduled"
    assert event["NotBefore"].endswith(" GMT")
    assert event["EventSource"] == "Platform"
    assert event["DurationInSeconds"] == -1


def test_another_instance_sees_none_of_them(setup: Setup, announced: str) -> None:
    status, document = call(setup, setup.ips["web-1"])
    assert status == 200
    assert document["DocumentIncarnation"] == events_of(setup, "web-1").incarnation
    assert announced not in [event["EventId"] for event in document["Events"]]
    assert all(event["Resources"] == ["web-1"] for event in document["Events"])
    if not events_of(setup, "web-1").events:
        assert document["Events"] == []


def test_an_instance_approves_its_own_event_and_the_document_changes(setup: Setup, announced: str) -> None:
    _, before = call(setup, setup.ips["web-0"])
    status, _ = call(setup, setup.ips["web-0"], "POST", body={"StartRequests": [{"EventId": announced}]})
    assert status == 200
    approved = events_of(setup, "web-0").find(announced)
    assert approved is not None and approved.approved_at is not None
    _, after = call(setup, setup.ips["web-0"])
    assert after["DocumentIncarnation"] != before["DocumentIncarnation"]


def test_another_instance_cannot_approve_it(setup: Setup, announced: str) -> None:
    status, body = call(setup, setup.ips["web-1"], "POST", body={"StartRequests": [{"EventId": announced}]})
    assert status == 403
    assert "error" in body
    event = events_of(setup, "web-0").find(announced)
    assert event is not None and event.approved_at is None


def test_every_documented_api_version_answers_and_an_unknown_one_is_refused(setup: Setup) -> None:
    for version in ("2017-03-01", "2017-11-01", "2019-01-01", "2019-08-01", "2020-07-01"):
        assert (
            call(setup, setup.ips["web-0"], path=f"/metadata/scheduledevents?api-version={version}")[0] == 200
        )
    status, body = call(setup, setup.ips["web-0"], path="/metadata/scheduledevents?api-version=2015-01-01")
    assert status == 400
    assert body["error"].startswith("Bad request. api-version is invalid")
    assert "newest-versions" in body


def test_without_the_metadata_header_the_request_is_refused(setup: Setup) -> None:
    status, body = call(setup, setup.ips["web-0"], headers={"Metadata": "false"})
    assert status == 400
    assert body == {"error": "Bad request. Required metadata header not specified"}


def test_a_forwarded_request_is_refused(setup: Setup) -> None:
    status, body = call(
        setup, setup.ips["web-0"], headers={"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}
    )
    assert status == 400
    assert "X-Forwarded-For" in body["error"]


def test_an_address_that_is_no_instance_is_forbidden(setup: Setup) -> None:
    assert call(setup, "127.0.0.1")[0] == 403
    assert call(setup, "127.0.0.1", "POST", body={"StartRequests": [{"EventId": "x"}]})[0] == 403


def test_a_malformed_start_request_is_refused(setup: Setup) -> None:
    status, body = call(setup, setup.ips["web-0"], "POST", body={"StartRequests": [{"Id": "x"}]})
    assert status == 400
    assert "StartRequests" in body["error"]


def test_a_restarted_server_carries_on_from_the_api(setup: Setup, announced: str) -> None:
    with ServerThread(KubeInstanceEvents(setup.kube)) as other:
        fresh = Setup(setup.kube, other.port, setup.ips, setup.kubeconfig)
        _, document = call(fresh, setup.ips["web-0"])
    assert announced in [event["EventId"] for event in document["Events"]]


def test_the_operator_serves_the_endpoint_beside_itself(setup: Setup, announced: str) -> None:
    from scaleset_operator.runner import OperatorThread

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OperatorThread(str(setup.kubeconfig), scheduled_events_address=f"127.0.0.1:{port}"):
        _, document = call(Setup(setup.kube, port, setup.ips, setup.kubeconfig), setup.ips["web-0"])
    assert announced in [event["EventId"] for event in document["Events"]]


def pods(setup: Setup, *names: str) -> list[dict[str, Any]]:
    return [setup.kube.get(core_path("pods", NAMESPACE, name)) for name in names]


def test_a_batch_whose_instances_approve_early_starts_at_once(setup: Setup) -> None:
    from scaleset_operator.control.scheduled_events import ScheduledEventsControl, event_id

    control = ScheduledEventsControl(setup.kube)
    now = datetime.now(UTC)
    timing = control.prepare(pods(setup, "web-0", "web-1"), EventType.REBOOT, "rev-early", now)
    assert not timing.ready
    assert timing.waiting_for == ("web-0", "web-1")
    for name in ("web-0", "web-1"):
        (pod,) = pods(setup, name)
        _, document = call(setup, setup.ips[name])
        assert event_id(pod, EventType.REBOOT, "rev-early") in [e["EventId"] for e in document["Events"]]
        status, _ = call(
            setup,
            setup.ips[name],
            "POST",
            body={"StartRequests": [{"EventId": event_id(pod, EventType.REBOOT, "rev-early")}]},
        )
        assert status == 200
    assert control.prepare(pods(setup, "web-0", "web-1"), EventType.REBOOT, "rev-early", now).ready
    control.start(pods(setup, "web-0", "web-1"), EventType.REBOOT, "rev-early", now)
    _, document = call(setup, setup.ips["web-1"])
    (started,) = [e for e in document["Events"] if e["EventStatus"] == "Started"]
    assert started["NotBefore"] == ""
    for pod in pods(setup, "web-0", "web-1"):
        control.finish(pod, EventType.REBOOT, "rev-early")
    _, document = call(setup, setup.ips["web-1"])
    assert document["Events"] == []


def test_a_batch_nobody_approves_starts_at_not_before(setup: Setup) -> None:
    from datetime import timedelta

    from scaleset_operator.control.scheduled_events import ScheduledEventsControl

    control = ScheduledEventsControl(setup.kube)
    now = datetime.now(UTC)
    timing = control.prepare(pods(setup, "web-1"), EventType.REDEPLOY, "node-a", now, timedelta(minutes=5))
    assert not timing.ready
    assert timing.starts_by == (now + timedelta(minutes=5)).replace(microsecond=0)
    later = control.prepare(pods(setup, "web-1"), EventType.REDEPLOY, "node-a", now + timedelta(minutes=5))
    assert later.ready
    kinds = [
        event["reason"]
        for event in setup.kube.list(core_path("events", NAMESPACE))
        if event["involvedObject"]["name"] == "web-1"
    ]
    assert "ScheduledEventAnnounced" in kinds


@pytest.mark.parametrize(
    ("remote", "address"),
    [
        ("127.1.0.7", "127.1.0.7"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("fd00::5", "fd00::5"),
        ("", None),
        (None, None),
    ],
)
def test_the_caller_address_is_normalised_as_pods_report_theirs(
    remote: str | None, address: str | None
) -> None:
    from scaleset_operator.imds.server import caller_address

    assert caller_address(remote) == address
