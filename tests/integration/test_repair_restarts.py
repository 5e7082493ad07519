"""Automatic repairs driven pass by pass with an explicit clock, on a live API of their own: the grace
period is judged by the clock the pass is given, and a repair recorded by an operator that stopped
before it removed the pod is finished by the next operator, not started twice.

These tests run reconcile passes themselves (no kopf operator), so they use a cluster of their own:
kubesim, or a testbed of their own with KUBESIM_TESTBED=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from kubesim.testing import cluster_for_tests
from scaleset_operator.control.context import utcnow
from scaleset_operator.control.kube import Kube, core_path, fleet_path
from scaleset_operator.control.reconcile import Reconciler
from tests.integration.conftest import install_crds
from tests.integration.helpers import create, is_ready, scaleset_body, scaleset_ready, wait_for

pytestmark = pytest.mark.e2e

TIMEOUT = 60
GRACE = timedelta(minutes=10)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with cluster_for_tests(nodes=3, time_scale=20.0) as running:
        yield running


@pytest.fixture(scope="module")
def kube(cluster: Any) -> Kube:
    client = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
    install_crds(client)
    return client


@pytest.fixture
def namespace(kube: Kube) -> str:
    import uuid

    name = f"r-{uuid.uuid4().hex[:8]}"
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    wait_for(
        lambda: kube.get_or_none(core_path("serviceaccounts", name, "default")),
        TIMEOUT,
        "the default account",
    )
    return name


class Crash(Exception):
    pass


class StopsBeforeEviction(Kube):
    """An operator killed just before it evicts a pod: everything up to that write happens."""

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if method == "POST" and path.endswith("/eviction"):
            raise Crash(f"killed before POST {path}")
        return super().request(method, path, *args, **kwargs)


def _pod(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get_or_none(core_path("pods", namespace, name))


def _repairs(kube: Kube, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
        "repairs"
    ) or {}
    return found


def _settle(reconciler: Reconciler, kube: Kube, namespace: str) -> dict[str, Any] | None:
    reconciler.reconcile(namespace, "web")
    return scaleset_ready(kube, namespace, "web")


def test_the_grace_period_is_judged_by_the_passs_clock_and_a_recorded_repair_survives_a_restart(
    cluster: Any, kube: Kube, namespace: str
) -> None:
    create(kube, namespace, scaleset_body("web", 3, automaticRepairs={"enabled": True, "gracePeriod": "10m"}))
    real = Reconciler(kube)
    wait_for(lambda: _settle(real, kube, namespace), TIMEOUT, "web Ready", interval=0.1)
    sick = _pod(kube, namespace, "web-1")
    assert sick is not None
    cluster.kubelet.set_behaviour(namespace, "web-1", "never-ready")

    def unready() -> bool:
        real.reconcile(namespace, "web")
        return not is_ready(_pod(kube, namespace, "web-1") or {})

    wait_for(unready, TIMEOUT, "web-1 not Ready", interval=0.1)
    unready_at = utcnow()

    def at(offset: timedelta) -> Reconciler:
        return Reconciler(kube, clock=lambda: unready_at + offset)

    # Inside the grace period nothing is repaired, however often the pass runs.
    for _ in range(3):
        at(GRACE - timedelta(seconds=30)).reconcile(namespace, "web")
    assert not _repairs(kube, namespace).get("current")
    assert (_pod(kube, namespace, "web-1") or {})["metadata"]["uid"] == sick["metadata"]["uid"]

    # Past it, the repair is recorded, and the operator is killed before it evicts the pod.
    late = unready_at + GRACE + timedelta(minutes=1)
    with pytest.raises(Crash):
        Reconciler(StopsBeforeEviction(kube.api_client), clock=lambda: late).reconcile(namespace, "web")
    current = _repairs(kube, namespace)["current"]
    assert (current["instance"], current["action"], current["podUID"]) == (
        "web-1",
        "Replace",
        sick["metadata"]["uid"],
    )
    assert (_pod(kube, namespace, "web-1") or {})["metadata"]["uid"] == sick["metadata"]["uid"]

    # The next operator (on the real clock: no instance is due by it) finishes the recorded repair.
    def repaired() -> bool:
        real.reconcile(namespace, "web")
        pod = _pod(kube, namespace, "web-1")
        return bool(pod and pod["metadata"]["uid"] != sick["metadata"]["uid"] and is_ready(pod))

    wait_for(repaired, TIMEOUT, "web-1 replaced by the next operator", interval=0.1)
    wait_for(lambda: _settle(real, kube, namespace), TIMEOUT, "web Ready again", interval=0.1)
    repairs = _repairs(kube, namespace)
    assert not repairs.get("current")
    assert [(h["instance"], h["result"]) for h in repairs["history"]] == [("web-1", "Repaired")]
    started = [e for e in kube.list(core_path("events", namespace)) if e.get("reason") == "RepairStarted"]
    assert len(started) == 1, "the repair was started twice"
    assert datetime.fromisoformat(current["startedAt"].replace("Z", "+00:00")) >= late - timedelta(seconds=1)
