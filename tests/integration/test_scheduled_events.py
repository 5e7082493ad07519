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
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubesim.testing import use_testbed
from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import OPERATOR_USER
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


# The endpoint allows an instance five requests a second, as the cloud service does; these clients poll
# within that.
_PACE_SECONDS = 0.21
_last_call: dict[str, float] = {}


def call(operator: OperatorThread, source_ip: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    wait = _last_call.get(source_ip, 0.0) + _PACE_SECONDS - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _last_call[source_ip] = time.monotonic()
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


# --------------------------------------------------------------------------- who may call, on a live API

HAND_NODE = "imds-hand-run"
HAND_NODE_ADDRESS = "127.0.3.1"


@pytest.fixture
def hand_run(kube: Kube, namespace: str) -> Iterator[Callable[..., dict[str, Any]]]:
    """Pods on a node no kubelet runs, whose status (phase, address) the test writes as a kubelet would."""
    if kube.get_or_none(core_path("nodes", name=HAND_NODE)) is None:
        kube.create(core_path("nodes"), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": HAND_NODE}})
    kube.patch(
        core_path("nodes", name=HAND_NODE, sub="status"),
        {"status": {"addresses": [{"type": "InternalIP", "address": HAND_NODE_ADDRESS}]}},
    )
    # A namespace takes pods once its ServiceAccount exists (a moment after it, on a real control plane).
    wait_for(
        lambda: kube.get_or_none(core_path("serviceaccounts", namespace, "default")), 30, "the ServiceAccount"
    )
    made: list[str] = []

    def run(name: str, ip: str, phase: str = "Running", instance: bool = True) -> dict[str, Any]:
        labels = {LABEL_SCALESET: "web"} if instance else {"app": "other"}
        kube.create(
            core_path("pods", namespace),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {"nodeName": HAND_NODE, "containers": [{"name": "app", "image": f"{IMAGE}:v1"}]},
            },
        )
        made.append(name)
        status = {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": HAND_NODE_ADDRESS}
        return kube.patch(core_path("pods", namespace, name, sub="status"), {"status": status})

    yield run
    for name in made:
        force_delete(kube, namespace, name)


def force_delete(kube: Kube, namespace: str, name: str) -> None:
    """No kubelet confirms the deletion of a hand-run pod: it goes at once, as with --force."""
    try:
        kube.request(
            "DELETE",
            core_path("pods", namespace, name),
            body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
        )
    except ApiError as error:
        if error.status != 404:
            raise


def raw_call(
    address: str, source_ip: str, headers: dict[str, str], method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source_ip, 0))
    try:
        connection.request(method, PATH, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def test_shared_and_finished_addresses_are_refused_by_the_operator(
    kube: Kube, namespace: str, operator: OperatorThread, hand_run: Callable[..., dict[str, Any]]
) -> None:
    hand_run("lone-0", "127.0.3.30")
    hand_run("twin-0", "127.0.3.31")
    hand_run("twin-1", "127.0.3.31")
    hand_run("done-0", "127.0.3.32", phase="Succeeded")
    hand_run("done-1", "127.0.3.33", phase="Failed")
    hand_run("reborn-0", "127.0.3.33")
    # The endpoint sees the pods a watch's delay after they were written.
    wait_for(lambda: call(operator, "127.0.3.30")[0] == 200, TIMEOUT, "the lone instance served")
    # Each pod reaches the endpoint's watch on its own; wait for every one, then check each answer.
    for address, reason in (
        ("127.0.3.31", "held by 2 pods"),
        ("127.0.3.32", "finished"),
        (HAND_NODE_ADDRESS, "node"),
    ):
        wait_for(
            lambda a=address, r=reason: _refused(operator, a, r), TIMEOUT, f"{address} refused: {reason}"
        )
        status, body = call(operator, address)
        assert status == 403 and reason in body["error"], (address, body)
    wait_for(
        lambda: call(operator, "127.0.3.33")[0] == 200,
        TIMEOUT,
        "a running instance on a finished pod's old address",
    )


def _refused(operator: OperatorThread, address: str, reason: str) -> bool:
    status, body = call(operator, address)
    return status == 403 and reason in str(body.get("error"))


class PodRequests:
    """The operator's requests for pods, as the API server served them: kubesim counts each request;
    the testbed's audit log names the operator's ServiceAccount and client."""

    def __init__(self, kubesim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.audit = getattr(kubesim, "audit_log", None)
        self.counted: Counter[str] = Counter()
        if self.audit is None:
            faults = kubesim.faults
            original = faults.error_for

            def counting(verb: str, resource: str) -> Any:
                if resource == "pods":
                    self.counted[verb] += 1
                return original(verb, resource)

            monkeypatch.setattr(faults, "error_for", counting)

    def __enter__(self) -> PodRequests:
        self.start = self.audit.stat().st_size if self.audit is not None else sum(self.counted.values())
        self.before = Counter(self.counted)
        return self

    def __exit__(self, *_: object) -> None:
        if self.audit is None:
            self.seen = self.counted - self.before
            return
        self.seen = Counter()
        with self.audit.open() as log:
            log.seek(self.start)
            for line in log:
                if not line.strip():
                    continue
                event = json.loads(line)
                ref = event.get("objectRef") or {}
                if (
                    (event.get("user") or {}).get("username") == OPERATOR_USER
                    and event.get("stage") == "ResponseComplete"
                    and ref.get("resource") == "pods"
                    and not ref.get("subresource")
                    # kopf's own watches re-list on their schedule: they are not the endpoint's.
                    and not str(event.get("userAgent", "")).startswith("kopf")
                ):
                    self.seen[
                        event["verb"] if ref.get("namespace") else f"{event['verb']} (all namespaces)"
                    ] += 1


def test_the_operators_endpoint_lists_no_pods_per_request(
    kube: Kube,
    namespace: str,
    operator: OperatorThread,
    hand_run: Callable[..., dict[str, Any]],
    kubesim: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addresses = [f"127.0.3.{40 + i}" for i in range(8)]
    for i, address in enumerate(addresses):
        hand_run(f"quiet-{i}", address)
    for address in addresses:
        wait_for(lambda a=address: call(operator, a)[0] == 200, TIMEOUT, f"{address} served")
    with PodRequests(kubesim, monkeypatch) as requests:
        for _ in range(5):
            for address in addresses:
                assert call(operator, address)[0] == 200
    # 40 requests; before the index, each was a cluster-wide list of pods.
    if kubesim is not None and getattr(kubesim, "audit_log", None) is not None:
        assert requests.seen["list (all namespaces)"] == 0 and requests.seen["get"] == 0, requests.seen
    else:
        # kubesim counts every client's requests: the reconciler's passes over other ScaleSets may list a
        # namespace's pods now and then, never once per request.
        assert requests.seen["list"] + requests.seen["get"] <= 4, requests.seen


# --------------------------------------------------------------------------- token identity

AUDIENCE = "scaleset-operator"


def bound_token(kube: Kube, namespace: str, pod: dict[str, Any], audience: str = AUDIENCE) -> str:
    """A token the API server issues for the pod's ServiceAccount, bound to the pod (TokenRequest), as
    a projected serviceAccountToken volume gets it."""
    answer = kube.create(
        core_path("serviceaccounts", namespace, "default", sub="token"),
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience],
                "expirationSeconds": 600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        },
    )
    return str(answer["status"]["token"])


@pytest.fixture
def token_review_granted(kube: Kube) -> Iterator[None]:
    """manifests/components/token-review applied, and in force for the operator's ServiceAccount."""
    import yaml

    from tests.integration.conftest import ROOT

    paths = {
        "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    }
    documents = list(yaml.safe_load_all((ROOT / "manifests/components/token-review/rbac.yaml").read_text()))
    for document in documents:
        if kube.get_or_none(f"{paths[document['kind']]}/{document['metadata']['name']}") is None:
            kube.create(paths[document["kind"]], document)

    def allowed() -> bool:
        review = kube.create(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": OPERATOR_USER,
                    "resourceAttributes": {
                        "group": "authentication.k8s.io",
                        "resource": "tokenreviews",
                        "verb": "create",
                    },
                },
            },
        )
        return bool(review["status"].get("allowed"))

    wait_for(allowed, 30, "the RBAC of the token-review component in force")
    yield


@pytest.fixture
def token_endpoint(operator_kubeconfig: str, token_review_granted: None) -> Iterator[str]:
    """The endpoint as `scaleset operator --scheduled-events-identity=token` serves it, under the
    operator's own ServiceAccount."""
    import asyncio
    import socket
    import threading

    from scaleset_operator.imds.server import Identity, serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stops: list[Any] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        stops.append(
            loop.run_until_complete(
                serve(
                    Kube.from_kubeconfig(operator_kubeconfig),
                    address,
                    identity=Identity.TOKEN,
                    audience=AUDIENCE,
                )
            )
        )
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stops[0]())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield address
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


@pytest.mark.skipif(
    not use_testbed(),
    reason="testbed only: kubesim authenticates nobody, so it issues no ServiceAccount tokens "
    "(TokenRequest) and serves no TokenReview; the real API server does both",
)
def test_a_projected_token_names_its_own_pod_and_no_other(
    kube: Kube, namespace: str, hand_run: Callable[..., dict[str, Any]], token_endpoint: str
) -> None:
    from datetime import UTC, datetime

    from scaleset_operator.planning.scheduled_events import (
        EVENTS_ANNOTATION,
        EventDocument,
        EventType,
        announce,
        encode,
    )

    # Two instances that share one address: address identity could tell neither; tokens can.
    mine = hand_run("token-0", "127.0.3.60")
    other = hand_run("token-1", "127.0.3.60")
    document = announce(
        EventDocument(),
        event_id="EV-TOKEN-0",
        event_type=EventType.REBOOT,
        instance="token-0",
        now=datetime.now(UTC),
    )
    kube.patch(
        core_path("pods", namespace, "token-0"),
        {"metadata": {"annotations": {EVENTS_ANNOTATION: encode(document)}}},
    )
    token, other_token = bound_token(kube, namespace, mine), bound_token(kube, namespace, other)

    def headers(bearer: str | None) -> dict[str, str]:
        return {"Metadata": "true"} | ({"Authorization": f"Bearer {bearer}"} if bearer else {})

    def events(bearer: str) -> list[str] | None:
        time.sleep(_PACE_SECONDS)
        status, body = raw_call(token_endpoint, "127.0.0.1", headers(bearer))
        assert status == 200, body
        return [event["EventId"] for event in body["Events"]]

    wait_for(lambda: events(token) == ["EV-TOKEN-0"], TIMEOUT, "token-0 to see its event by its token")
    assert events(other_token) == [], "token-1's token reads token-1's document"

    # Another pod's token cannot approve the event, from any address.
    approve = {"StartRequests": [{"EventId": "EV-TOKEN-0"}]}
    status, body = raw_call(token_endpoint, "127.0.3.60", headers(other_token), "POST", approve)
    assert status == 403 and "not an event of this instance" in body["error"]
    for refused, reason in (
        (None, "ServiceAccount token"),
        ("not-a-token", "not accepted"),
        (bound_token(kube, namespace, mine, audience="someone-else"), "not accepted"),
    ):
        time.sleep(_PACE_SECONDS)
        status, body = raw_call(token_endpoint, "127.0.0.1", headers(refused), "POST", approve)
        assert status == 403 and reason in body["error"], body
    assert (
        'approvedAt":null'
        in kube.get(core_path("pods", namespace, "token-0"))["metadata"]["annotations"][EVENTS_ANNOTATION]
    )

    time.sleep(_PACE_SECONDS)
    status, body = raw_call(token_endpoint, "127.0.0.1", headers(token), "POST", approve)
    assert status == 200, body
    assert (
        'approvedAt":null'
        not in kube.get(core_path("pods", namespace, "token-0"))["metadata"]["annotations"][EVENTS_ANNOTATION]
    )

    # A token outlives no pod: once token-0 is gone, its token names nobody.
    force_delete(kube, namespace, "token-0")

    def refused_after_deletion() -> bool:
        time.sleep(_PACE_SECONDS)
        return raw_call(token_endpoint, "127.0.0.1", headers(token))[0] == 403

    wait_for(refused_after_deletion, TIMEOUT, "the deleted pod's token refused")
