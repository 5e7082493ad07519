"""How the operator takes a pod away: evicted, or deleted when that disrupts nothing; and what it reads
from a refused eviction (the API server's answers, as kube-apiserver's EvictionREST writes them)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scaleset_operator.control.context import EvictionRefused
from scaleset_operator.control.instance_control import disrupts_nothing, eviction_refusal
from scaleset_operator.control.kube import ApiError, _from_status
from scaleset_operator.planning.batches import Complete
from scaleset_operator.planning.status import FleetCounts, scaleset_conditions


def pod(phase: str | None, node: str | None = "node-0") -> dict[str, Any]:
    return {"metadata": {"name": "web-0"}, "spec": {"nodeName": node}, "status": {"phase": phase}}


@pytest.mark.parametrize(
    "phase,node,outright",
    [
        ("Failed", "node-0", True),
        ("Succeeded", "node-0", True),
        ("Pending", None, True),  # never scheduled: no kubelet runs it, the budget does not count it
        ("Running", "node-0", False),
        ("Pending", "node-0", False),  # scheduled: the Eviction API decides (it lets a Pending pod go)
    ],
)
def test_finished_and_unscheduled_pods_are_deleted_and_the_rest_evicted(
    phase: str, node: str | None, outright: bool
) -> None:
    assert disrupts_nothing(pod(phase, node)) is outright


def _answer(code: int, body: dict[str, Any]) -> ApiError:
    return _from_status(code, json.dumps(body).encode())


REFUSED = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "Cannot evict pod as it would violate the pod's disruption budget.",
    "reason": "TooManyRequests",
    "details": {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web-budget needs 3 healthy pods and has 3 currently",
            }
        ]
    },
    "code": 429,
}


def test_a_budget_refusal_names_the_budget_and_its_reason() -> None:
    refusal = eviction_refusal("web-0", _answer(429, REFUSED))
    assert refusal == EvictionRefused(
        "web-0", "web-budget", "The disruption budget web-budget needs 3 healthy pods and has 3 currently"
    )
    assert refusal.describe() == (
        "evicting web-0 is refused by PodDisruptionBudget web-budget (The disruption budget web-budget "
        "needs 3 healthy pods and has 3 currently); nothing was deleted"
    )


def test_two_budgets_over_one_pod_are_a_refusal_too() -> None:
    body = {
        "kind": "Status",
        "status": "Failure",
        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        "code": 500,
    }
    refusal = eviction_refusal("web-0", _answer(500, body))
    assert refusal is not None and refusal.budget is None


@pytest.mark.parametrize(
    "code,body",
    [
        (429, {"reason": "TooManyRequests", "message": "the server is busy"}),  # throttling: transient
        (500, {"reason": "InternalError", "message": "etcd is down"}),
        (
            409,
            {
                "reason": "Conflict",
                "message": "Precondition failed: UID in precondition: a, UID in object meta: b",
            },
        ),
    ],
)
def test_other_answers_are_not_budget_refusals(code: int, body: dict[str, Any]) -> None:
    assert eviction_refusal("web-0", _answer(code, body)) is None


def test_a_refused_eviction_says_so_in_ready_and_progressing() -> None:
    counts = FleetCounts(replicas=3, existing=3, healthy=3, updated=3, extra=1)
    refusal = EvictionRefused(
        "web-3", "web-budget", "The disruption budget web-budget needs 3 healthy pods and has 3 currently"
    )
    ready, progressing, stalled, reconciling = scaleset_conditions(
        counts, Complete(), update_revision="web-1", locked=False, eviction_refused=refusal.describe()
    )
    assert (ready.status, ready.reason) == (False, "EvictionBlocked")
    assert (progressing.status, progressing.reason) == (True, "EvictionBlocked")
    assert "PodDisruptionBudget web-budget" in ready.message and ready.message.endswith("it is tried again.")
    assert not stalled.status
    assert reconciling.status, "a refused eviction is work left: kstatus must read it as InProgress"
