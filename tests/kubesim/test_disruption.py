"""PodDisruptionBudgets and pods/eviction through the official client, with the kubelet simulator running
the pods: the status the disruption controller computes and the answers of the eviction subresource.

On the testbed (KUBESIM_TESTBED=1) the same tests meet kube-controller-manager's disruption controller
and the real API server's eviction: what kubesim answers must be what they answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.kubesim import test_server_client as server_tests
from tests.kubesim.conftest import GROUP, WIDGET_CRD, wait_until

# A simulated minute passes in three real seconds: pods are Ready about a second after they are made.
KUBESIM_OPTIONS = {"time_scale": 20.0}
TIMEOUT = 30.0
BUDGET_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget."

# The client and namespace fixtures of the server tests, on this module's cluster.
core = server_tests.core
namespace = server_tests.namespace


@pytest.fixture
def policy(k8s_client: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(k8s_client)


def make_pods(
    core: client.CoreV1Api,
    namespace: str,
    count: int,
    image: str = "app:v1",
    owner: dict[str, Any] | None = None,
    **spec: Any,
) -> list[str]:
    names = [f"app-{i}" for i in range(count)]
    for name in names:
        metadata: dict[str, Any] = {"name": name, "labels": {"app": "web"}}
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        body = {"metadata": metadata, "spec": {"containers": [{"name": "app", "image": image}], **spec}}
        core.create_namespaced_pod(namespace, body)
    return names


def make_sick_pod(core: client.CoreV1Api, namespace: str) -> None:
    """A pod of the budget that runs but never becomes Ready."""
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "sick", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:v1-never-ready"}]},
        },
    )
    wait_until(
        lambda: core.read_namespaced_pod("sick", namespace).status.phase == "Running", TIMEOUT, "sick Running"
    )


def ready(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    pod = core.read_namespaced_pod(name, namespace)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def wait_ready(core: client.CoreV1Api, namespace: str, names: list[str]) -> None:
    wait_until(lambda: all(ready(core, namespace, n) for n in names), TIMEOUT, f"{names} Ready")


def budget(policy: client.PolicyV1Api, namespace: str, name: str = "web", **spec: Any) -> None:
    body = {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}
    policy.create_namespaced_pod_disruption_budget(namespace, body)


def status(policy: client.PolicyV1Api, namespace: str, name: str = "web") -> dict[str, Any]:
    raw = policy.read_namespaced_pod_disruption_budget(name, namespace, _preload_content=False)
    found: dict[str, Any] = json.loads(raw.data).get("status") or {}
    return found


def settled(
    policy: client.PolicyV1Api, namespace: str, timeout: float = TIMEOUT, nudge: bool = False, **expected: int
) -> dict[str, Any]:
    """The budget's status once the controller reports `expected` (a real controller takes a moment).

    With `nudge`, the budget is touched every few seconds: a real controller learns a new custom kind
    only from its next discovery sync (up to 30 seconds), and syncs a budget again on a change.
    """
    seen: list[dict[str, Any]] = []
    touched = [time.monotonic()]

    def reached() -> dict[str, Any] | None:
        found = status(policy, namespace)
        seen[:] = [found]
        if found and all(found.get(k) == v for k, v in expected.items()):
            return found
        if nudge and time.monotonic() - touched[0] > 3:
            touched[0] = time.monotonic()
            policy.patch_namespaced_pod_disruption_budget(
                "web", namespace, {"metadata": {"annotations": {"nudge": str(touched[0])}}}
            )
        return None

    try:
        return wait_until(reached, timeout, f"PodDisruptionBudget status {expected}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen {seen}") from None


def evict(
    core: client.CoreV1Api, namespace: str, name: str, preconditions: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST pods/NAME/eviction; (HTTP status, the Status answered)."""
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    if preconditions:
        body["deleteOptions"] = {"preconditions": preconditions}
    try:
        raw = core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False)
    except ApiException as error:
        return int(error.status), server_tests.status_of(error)
    return int(raw.status), json.loads(raw.data)


def going(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        return core.read_namespaced_pod(name, namespace).metadata.deletion_timestamp is not None
    except ApiException as error:
        return error.status == 404


def test_a_budget_counts_the_ready_pods_it_selects(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    pods = make_pods(core, namespace, 3)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, minAvailable=2)
    found = settled(
        policy, namespace, currentHealthy=3, desiredHealthy=2, expectedPods=3, disruptionsAllowed=1
    )
    assert found["observedGeneration"] == 1
    (condition,) = [c for c in found["conditions"] if c["type"] == "DisruptionAllowed"]
    assert (condition["status"], condition["reason"]) == ("True", "SufficientPods")


def test_an_eviction_the_budget_allows_deletes_the_pod_and_the_next_is_refused_naming_the_budget(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    pods = make_pods(core, namespace, 3)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, minAvailable=2)
    settled(policy, namespace, disruptionsAllowed=1)
    code, answer = evict(core, namespace, "app-0")
    assert (code, answer["status"]) == (201, "Success")
    assert going(core, namespace, "app-0")
    # The evicted pod no longer counts: 2 healthy of the 2 the budget needs, no disruption allowed.
    settled(policy, namespace, currentHealthy=2, disruptionsAllowed=0)
    code, refusal = evict(core, namespace, "app-1")
    assert (code, refusal["reason"], refusal["message"]) == (429, "TooManyRequests", BUDGET_REFUSAL)
    (cause,) = refusal["details"]["causes"]
    assert cause["reason"] == "DisruptionBudget"
    assert cause["message"] == "The disruption budget web needs 2 healthy pods and has 2 currently"
    assert not going(core, namespace, "app-1"), "a refused eviction deletes nothing"


def test_an_eviction_takes_its_disruption_at_once(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    pods = make_pods(core, namespace, 3)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, minAvailable=1)
    settled(policy, namespace, disruptionsAllowed=2)
    assert evict(core, namespace, "app-0")[0] == 201
    # Before or after the controller has seen the pod go, one disruption of the two is used up: the
    # eviction itself decrements disruptionsAllowed, so a second evictor cannot race past the budget.
    assert status(policy, namespace)["disruptionsAllowed"] == 1
    settled(policy, namespace, currentHealthy=2, disruptionsAllowed=1)


def test_a_pod_no_budget_selects_is_evicted(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    pods = make_pods(core, namespace, 1)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, name="other", minAvailable=5, selector={"matchLabels": {"app": "other"}})
    assert evict(core, namespace, "app-0")[0] == 201
    assert going(core, namespace, "app-0")


def test_an_eviction_honours_its_preconditions(core: client.CoreV1Api, namespace: str) -> None:
    pods = make_pods(core, namespace, 1)
    wait_ready(core, namespace, pods)
    pod = core.read_namespaced_pod("app-0", namespace)
    code, answer = evict(core, namespace, "app-0", {"uid": "not-its-uid"})
    assert (code, answer["reason"]) == (409, "Conflict")
    stale = str(int(pod.metadata.resource_version) - 1)
    code, answer = evict(core, namespace, "app-0", {"resourceVersion": stale})
    assert (code, answer["reason"]) == (409, "Conflict")
    assert not going(core, namespace, "app-0")
    current = core.read_namespaced_pod("app-0", namespace).metadata
    code, _ = evict(
        core, namespace, "app-0", {"uid": current.uid, "resourceVersion": current.resource_version}
    )
    assert code == 201 and going(core, namespace, "app-0")


def test_a_finished_pod_is_evicted_whatever_the_budget_says(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    make_pods(core, namespace, 2, image="job:v1-fail-after-1s", restartPolicy="Never")
    wait_until(
        lambda: core.read_namespaced_pod("app-0", namespace).status.phase == "Failed", TIMEOUT, "app-0 Failed"
    )
    budget(policy, namespace, minAvailable=2)
    settled(policy, namespace, disruptionsAllowed=0)
    assert evict(core, namespace, "app-0")[0] == 201
    wait_until(lambda: going(core, namespace, "app-0"), TIMEOUT, "app-0 deleted")


def test_a_pod_two_budgets_select_cannot_be_evicted(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    pods = make_pods(core, namespace, 2)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, name="web", minAvailable=0)
    budget(policy, namespace, name="web-too", minAvailable=0)
    settled(policy, namespace, disruptionsAllowed=2)
    code, answer = evict(core, namespace, "app-0")
    assert code == 500
    assert answer["message"] == (
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    )
    assert not going(core, namespace, "app-0")


def test_a_pod_that_is_not_ready_may_go_while_the_budget_is_met(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    # IfHealthyBudget (the default): "Running pods ... that are not Ready may be evicted only if the
    # guarded application is not disrupted (status.currentHealthy is at least equal to status.desiredHealthy)".
    wait_ready(core, namespace, make_pods(core, namespace, 2))
    make_sick_pod(core, namespace)
    budget(policy, namespace, minAvailable=2)
    settled(policy, namespace, currentHealthy=2, desiredHealthy=2, disruptionsAllowed=0)
    assert evict(core, namespace, "app-0")[0] == 429
    assert evict(core, namespace, "sick")[0] == 201
    assert going(core, namespace, "sick")


def test_always_allow_lets_a_pod_that_is_not_ready_go_below_the_budget(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    wait_ready(core, namespace, make_pods(core, namespace, 1))
    make_sick_pod(core, namespace)
    budget(policy, namespace, minAvailable=2, unhealthyPodEvictionPolicy="AlwaysAllow")
    settled(policy, namespace, currentHealthy=1, desiredHealthy=2, disruptionsAllowed=0)
    assert evict(core, namespace, "app-0")[0] == 429
    assert evict(core, namespace, "sick")[0] == 201


@pytest.fixture(scope="module")
def widgets(kubesim_cluster: Any) -> str:
    api_client = kubesim_cluster.api_client()
    try:
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(WIDGET_CRD)
    except ApiException as error:
        if error.status != 409:
            raise
    custom = client.CustomObjectsApi(api_client)
    wait_until(lambda: _served(custom), TIMEOUT, "widgets served")
    return "widgets"


def _served(custom: client.CustomObjectsApi) -> bool:
    try:
        custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
        return True
    except ApiException:
        return False


def test_max_unavailable_counts_from_the_replicas_of_the_pods_controller(
    core: client.CoreV1Api,
    policy: client.PolicyV1Api,
    namespace: str,
    widgets: str,
    k8s_client: client.ApiClient,
) -> None:
    # A controller of four replicas with three pods up: expectedPods comes from its scale subresource.
    custom = client.CustomObjectsApi(k8s_client)
    owner = custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        widgets,
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"replicas": 4}},
    )
    ref = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "name": "w",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    pods = make_pods(core, namespace, 3, owner=ref)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, maxUnavailable=1)
    settled(
        policy,
        namespace,
        timeout=90,
        nudge=True,
        expectedPods=4,
        desiredHealthy=3,
        currentHealthy=3,
        disruptionsAllowed=0,
    )
    # A percentage is rounded up: 50 % of 4 is 2 unavailable, so 2 must stay healthy.
    policy.patch_namespaced_pod_disruption_budget("web", namespace, {"spec": {"maxUnavailable": "50%"}})
    found = settled(policy, namespace, expectedPods=4, desiredHealthy=2, disruptionsAllowed=1)
    assert found["observedGeneration"] == 2


def test_an_empty_selector_selects_every_pod_of_the_namespace(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    # policy/v1: "A null selector will match no pods, while an empty ({}) selector will select all pods
    # within the namespace."
    pods = make_pods(core, namespace, 2)
    wait_ready(core, namespace, pods)
    budget(policy, namespace, minAvailable=2, selector={})
    settled(policy, namespace, currentHealthy=2, expectedPods=2, disruptionsAllowed=0)
    assert evict(core, namespace, "app-0")[0] == 429


def test_a_budget_without_a_selector_selects_no_pod(
    core: client.CoreV1Api, policy: client.PolicyV1Api, namespace: str
) -> None:
    pods = make_pods(core, namespace, 1)
    wait_ready(core, namespace, pods)
    policy.create_namespaced_pod_disruption_budget(
        namespace, {"metadata": {"name": "web"}, "spec": {"minAvailable": 5}}
    )
    settled(policy, namespace, currentHealthy=0, expectedPods=0, disruptionsAllowed=0)
    assert evict(core, namespace, "app-0")[0] == 201
