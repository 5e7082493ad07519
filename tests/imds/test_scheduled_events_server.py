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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.faults import FaultInjector
from scaleset_operator.control.kube import Kube, core_path
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.imds.index import InstanceIndex
from scaleset_operator.imds.instances import IndexedInstanceEvents
from scaleset_operator.imds.limits import RequestRate
from scaleset_operator.imds.server import Endpoint, start_server
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
    requests: CountingFaults
    clock: ManualClock
    index: InstanceIndex


class CountingFaults(FaultInjector):
    """Injects nothing; counts every resource request the API server serves, by (verb, resource)."""

    def __init__(self) -> None:
        super().__init__()
        self.served: Counter[tuple[str, str]] = Counter()

    def error_for(self, verb: str, resource: str) -> Any:
        self.served[(verb, resource)] += 1
        return super().error_for(verb, resource)


class ManualClock:
    """The rate limit's clock, moved by the tests: requests within one test come at one instant."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL_SCALESET: "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    }


class ServerThread:
    """The endpoint on its own event loop, as the operator runs it beside kopf."""

    def __init__(self, source: Endpoint) -> None:
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
    requests = CountingFaults()
    with ThreadedCluster(nodes=1, time_scale=20.0, kubeconfig_path=str(path), faults=requests) as cluster:
        kube = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
        for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
            kube.create(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(crd_file.read_text()),
            )
        for name in ("web-0", "web-1"):
            kube.create(core_path("pods", NAMESPACE), _pod(name))

        def ips() -> dict[str, str] | None:
            statuses = {
                n: kube.get(core_path("pods", NAMESPACE, n)).get("status") or {} for n in ("web-0", "web-1")
            }
            if any(status.get("phase") != "Running" for status in statuses.values()):
                return None
            return {n: status["podIP"] for n, status in statuses.items()}

        addresses = wait_for(ips, 20, "instances Running with their IPs")
        index = InstanceIndex(kube).start()
        clock = ManualClock()
        endpoint = Endpoint(IndexedInstanceEvents(kube, index), rate=RequestRate(), clock=clock)
        try:
            with ServerThread(endpoint) as server:
                yield Setup(
                    kube, server.port, addresses, Path(cluster.kubeconfig_path), requests, clock, index
                )
        finally:
            index.stop()


@pytest.fixture(autouse=True)
def a_second_later(setup: Setup) -> None:
    """Each test starts with every instance's rate window empty."""
    setup.clock.now += 10.0


def seen_by(setup: Setup, pod: str, event_id: str, present: bool = True) -> dict[str, Any]:
    """The document `pod` reads once the endpoint's index has the change (a watch's delay at most)."""

    def document() -> dict[str, Any] | None:
        setup.clock.now += 1.0
        status, body = call(setup, setup.ips[pod])
        assert status == 200, body
        found = event_id in [event["EventId"] for event in body["Events"]]
        return body if found == present else None

    return dict(wait_for(document, 10, f"{pod} to see {event_id}"))


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
    seen_by(setup, "web-0", document.events[-1].event_id)
    setup.clock.now += 10.0
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
    assert status == 200, document
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
        setup.clock.now += 1.0
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
    index = InstanceIndex(setup.kube).start()
    try:
        with ServerThread(Endpoint(IndexedInstanceEvents(setup.kube, index))) as other:
            _, document = call(replace(setup, port=other.port), setup.ips["web-0"])
    finally:
        index.stop()
    assert announced in [event["EventId"] for event in document["Events"]]


def test_the_operator_serves_the_endpoint_beside_itself(setup: Setup, announced: str) -> None:
    from scaleset_operator.runner import OperatorThread

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OperatorThread(str(setup.kubeconfig), scheduled_events_address=f"127.0.0.1:{port}"):
        _, document = call(replace(setup, port=port), setup.ips["web-0"])
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
        seen_by(setup, name, event_id(pod, EventType.REBOOT, "rev-early"))
        status, _ = call(
            setup,
            setup.ips[name],
            "POST",
            body={"StartRequests": [{"EventId": event_id(pod, EventType.REBOOT, "rev-early")}]},
        )
        assert status == 200
    assert control.prepare(pods(setup, "web-0", "web-1"), EventType.REBOOT, "rev-early", now).ready
    control.start(pods(setup, "web-0", "web-1"), EventType.REBOOT, "rev-early", now)
    (web_1,) = pods(setup, "web-1")
    started_id = event_id(web_1, EventType.REBOOT, "rev-early")

    def started() -> dict[str, Any] | None:
        setup.clock.now += 1.0
        _, document = call(setup, setup.ips["web-1"])
        return next(
            (e for e in document["Events"] if e["EventId"] == started_id and e["EventStatus"] == "Started"),
            None,
        )

    assert wait_for(started, 10, "the started event")["NotBefore"] == ""
    for pod in pods(setup, "web-0", "web-1"):
        control.finish(pod, EventType.REBOOT, "rev-early")
    document = seen_by(setup, "web-1", started_id, present=False)
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


# --------------------------------------------------------------------------- who may call

HAND_NODE = "imds-hand-run"
HAND_NODE_ADDRESS = "127.0.3.1"


@pytest.fixture(scope="module")
def hand_node(setup: Setup) -> str:
    """A node no kubelet runs: the tests write its pods' status themselves, addresses included."""
    setup.kube.create(
        core_path("nodes"),
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": HAND_NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": HAND_NODE_ADDRESS}]},
        },
    )
    setup.kube.patch(
        core_path("nodes", name=HAND_NODE, sub="status"),
        {"status": {"addresses": [{"type": "InternalIP", "address": HAND_NODE_ADDRESS}]}},
    )
    return HAND_NODE


def hand_run_pod(
    setup: Setup,
    name: str,
    ip: str,
    phase: str = "Running",
    host_network: bool = False,
    instance: bool = True,
) -> dict[str, Any]:
    """A pod on the hand-run node with the address and phase a kubelet would have reported."""
    body = _pod(name)
    if not instance:
        body["metadata"]["labels"] = {"app": "other"}
    body["spec"]["nodeName"] = HAND_NODE
    if host_network:
        body["spec"]["hostNetwork"] = True
    setup.kube.create(core_path("pods", NAMESPACE), body)
    status = {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": HAND_NODE_ADDRESS}
    return setup.kube.patch(core_path("pods", NAMESPACE, name, sub="status"), {"status": status})


@pytest.fixture
def hand_run(setup: Setup, hand_node: str) -> Iterator[list[dict[str, Any]]]:
    """Pods a test runs by hand are deleted at its end, and gone from the index before the next."""
    pods: list[dict[str, Any]] = []
    yield pods
    for pod in pods:
        # No kubelet confirms the deletion of a hand-run pod: it goes at once, as with --force.
        setup.kube.request(
            "DELETE",
            core_path("pods", NAMESPACE, pod["metadata"]["name"]),
            body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
        )
    wait_for(
        lambda: all(setup.index.pod(p["metadata"]["uid"]) is None for p in pods), 10, "hand-run pods gone"
    )


def started(setup: Setup, hand_run: list[dict[str, Any]], *pods: tuple[str, str, dict[str, Any]]) -> None:
    """Run the pods by hand and wait until the endpoint's index holds each as the test wrote it."""
    for name, ip, options in pods:
        hand_run.append(hand_run_pod(setup, name, ip, **options))

    def indexed() -> bool:
        records = [setup.index.pod(pod["metadata"]["uid"]) for pod in hand_run]
        return all(
            record is not None and record.resource_version == pod["metadata"]["resourceVersion"]
            for record, pod in zip(records, hand_run, strict=True)
        )

    wait_for(indexed, 10, "the index to hold the hand-run pods")


def test_an_address_held_by_two_running_pods_names_no_instance(
    setup: Setup, hand_run: list[dict[str, Any]]
) -> None:
    started(setup, hand_run, ("shared-0", "127.0.3.10", {}), ("shared-1", "127.0.3.10", {}))
    status, body = call(setup, "127.0.3.10")
    assert status == 403
    assert body["error"].startswith("Forbidden.") and "held by 2 pods" in body["error"]
    status, body = call(setup, "127.0.3.10", "POST", body={"StartRequests": [{"EventId": "x"}]})
    assert status == 403 and "held by 2 pods" in body["error"]


def test_a_pod_that_is_no_instance_makes_an_instances_address_shared(
    setup: Setup, hand_run: list[dict[str, Any]]
) -> None:
    started(setup, hand_run, ("alone-0", "127.0.3.11", {}), ("intruder", "127.0.3.11", {"instance": False}))
    status, body = call(setup, "127.0.3.11")
    assert status == 403 and "held by 2 pods" in body["error"]


def test_an_instance_on_the_host_network_is_refused_and_so_is_its_node(
    setup: Setup, hand_run: list[dict[str, Any]]
) -> None:
    # A hostNetwork pod has its node's address, which every process on the node shares.
    started(setup, hand_run, ("on-host-0", HAND_NODE_ADDRESS, {"host_network": True}))
    status, body = call(setup, HAND_NODE_ADDRESS)
    assert status == 403
    assert "node" in body["error"] and "ServiceAccount token" in body["error"]


def test_a_nodes_address_is_refused_even_without_a_pod_on_it(setup: Setup, hand_node: str) -> None:
    status, body = call(setup, HAND_NODE_ADDRESS)
    assert status == 403 and "node" in body["error"]


def test_an_address_only_a_finished_pod_lists_is_refused(
    setup: Setup, hand_run: list[dict[str, Any]]
) -> None:
    started(
        setup,
        hand_run,
        ("done-0", "127.0.3.20", {"phase": "Succeeded"}),
        ("failed-0", "127.0.3.21", {"phase": "Failed"}),
    )
    for address in ("127.0.3.20", "127.0.3.21"):
        status, body = call(setup, address)
        assert status == 403 and "finished" in body["error"], body


def test_a_new_instance_on_a_finished_pods_old_address_is_served(
    setup: Setup, hand_run: list[dict[str, Any]]
) -> None:
    # A finished pod keeps its IP in status after the network gave it to a new pod.
    started(setup, hand_run, ("old-0", "127.0.3.22", {"phase": "Succeeded"}), ("new-0", "127.0.3.22", {}))
    status, body = call(setup, "127.0.3.22")
    assert status == 200, body
    assert body["Events"] == []


def test_a_pending_instance_is_refused(setup: Setup, hand_run: list[dict[str, Any]]) -> None:
    started(setup, hand_run, ("starting-0", "127.0.3.23", {"phase": "Pending"}))
    status, body = call(setup, "127.0.3.23")
    assert status == 403 and "Pending, not Running" in body["error"]


# --------------------------------------------------------------------------- limits


def test_a_sixth_request_within_a_second_is_refused_with_429(setup: Setup) -> None:
    """ "In general, requests to IMDS are limited to 5 requests per second (on a per VM basis). Requests
    exceeding this threshold will be rejected with 429 responses." (the service's Rate limiting)"""
    answers = [call(setup, setup.ips["web-0"])[0] for _ in range(6)]
    assert answers == [200] * 5 + [429]
    connection = http.client.HTTPConnection(
        "127.0.0.1", setup.port, timeout=10, source_address=(setup.ips["web-0"], 0)
    )
    connection.request("GET", PATH, headers={"Metadata": "true"})
    response = connection.getresponse()
    assert response.status == 429
    assert response.getheader("Retry-After") == "1"
    assert "error" in json.loads(response.read())
    connection.close()
    assert call(setup, setup.ips["web-1"])[0] == 200, "the limit is per instance"
    setup.clock.now += 0.5
    assert call(setup, setup.ips["web-0"])[0] == 429, "still within the second"
    setup.clock.now += 0.6
    assert call(setup, setup.ips["web-0"])[0] == 200, "a second later"


def raw_post(setup: Setup, source_ip: str, payload: bytes, chunked: bool = False) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", setup.port, timeout=10, source_address=(source_ip, 0)
    )
    try:
        headers = {"Metadata": "true", "Content-Type": "application/json"}
        if chunked:
            connection.request("POST", PATH, body=iter([payload]), headers=headers, encode_chunked=True)
        else:
            connection.request("POST", PATH, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def test_a_body_over_64_kib_is_refused_with_413(setup: Setup, announced: str) -> None:
    padding = "x" * (64 * 1024)
    payload = json.dumps({"StartRequests": [{"EventId": announced}], "Padding": padding}).encode()
    for chunked in (False, True):
        status, body = raw_post(setup, setup.ips["web-0"], payload, chunked=chunked)
        assert status == 413, (chunked, body)
        assert body["error"].startswith("Request entity too large")
    event = events_of(setup, "web-0").find(announced)
    assert event is not None and event.approved_at is None, "nothing of a refused body is acted on"
    small = json.dumps({"StartRequests": [{"EventId": announced}]}).encode()
    assert raw_post(setup, setup.ips["web-0"], small, chunked=True)[0] == 200


def test_an_event_id_named_many_times_is_approved_once_with_one_write(setup: Setup, announced: str) -> None:
    incarnation = events_of(setup, "web-0").incarnation
    before = dict(setup.requests.served)
    status, _ = call(
        setup, setup.ips["web-0"], "POST", body={"StartRequests": [{"EventId": announced}] * 200}
    )
    assert status == 200
    served = {key: count - before.get(key, 0) for key, count in setup.requests.served.items()}
    assert served.get(("patch", "pods"), 0) == 1, served
    assert served.get(("get", "pods"), 0) == 0 and served.get(("list", "pods"), 0) == 0, served
    document = events_of(setup, "web-0")
    assert document.incarnation == incarnation + 1, "one approval, one new incarnation"
    event = document.find(announced)
    assert event is not None and event.approved_at is not None


def test_requests_are_answered_from_the_index_without_reading_pods(setup: Setup, announced: str) -> None:
    before = dict(setup.requests.served)
    for _ in range(4):
        setup.clock.now += 1.0
        for name in ("web-0", "web-1"):
            assert call(setup, setup.ips[name])[0] == 200
    assert call(setup, "127.0.0.1")[0] == 403
    served = {key: count - before.get(key, 0) for key, count in setup.requests.served.items()}
    reads = {key: count for key, count in served.items() if key[0] in ("get", "list") and count}
    assert reads == {}, f"the endpoint read the API per request: {reads}"


def test_the_index_lists_again_when_its_watch_is_too_old(tmp_path: Path) -> None:
    """410 Gone (an etcd compaction, or a watch down too long): the index is listed again and replaced
    whole, so a pod deleted while nobody watched is not left behind."""
    from kubesim.cluster import ThreadedCluster

    with ThreadedCluster(
        kubelet=False, event_window=20, kubeconfig_path=str(tmp_path / "kubeconfig")
    ) as cluster:
        kube = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
        pod = kube.create(core_path("pods", NAMESPACE), _pod("gone-0"))
        kube.patch(
            core_path("pods", NAMESPACE, "gone-0", sub="status"),
            {"status": {"phase": "Running", "podIP": "127.0.4.1", "podIPs": [{"ip": "127.0.4.1"}]}},
        )
        index = InstanceIndex(kube, retry_seconds=0.05, relist_after=10**6).start()
        try:
            wait_for(lambda: index.holders("127.0.4.1"), 10, "the pod indexed")
            assert index.pods.lists == 1
            # The watch breaks and cannot come back while the pod goes and more than the API server's
            # event window of changes pass.
            # The list came first: the watch after it may still be connecting.
            response = wait_for(lambda: index.pods._response, 10, "the pods' watch connected")
            cluster.faults.fail_next("watch", 503, resource="pods", times=10**6)
            response.shutdown()
            kube.delete(core_path("pods", NAMESPACE, "gone-0"), preconditions_uid=pod["metadata"]["uid"])
            for i in range(30):
                kube.create(core_path("configmaps", NAMESPACE), {"metadata": {"name": f"churn-{i}"}})
            assert index.holders("127.0.4.1"), "nothing was watched meanwhile"
            cluster.faults.reset()
            wait_for(lambda: index.pods.lists == 2, 20, "the index to list again")
            assert index.holders("127.0.4.1") == []
        finally:
            index.stop()
