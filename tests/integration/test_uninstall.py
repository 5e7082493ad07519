"""Uninstalling: `kubectl delete -k manifests/` with ScaleSets present never waits on a finalizer of the
operator's, whether the operator runs or is gone; the garbage collector takes the instances, and the
claims go or stay as `persistentVolumeClaimRetentionPolicy.whenDeleted` says.

Each test uninstalls, so each has a cluster of its own (kubesim, or a testbed of its own).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.testing import cluster_for_tests, kubectl, use_external_cluster, use_testbed
from scaleset_operator.control.kube import Kube, core_path, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import ROOT, _crd_served, service_account_kubeconfig
from tests.integration.helpers import scaleset_body, scaleset_ready, wait_for

pytestmark = pytest.mark.e2e

FINALIZER = "fleet.scaleset.dev/finalizer"  # what kopf's daemons put on every ScaleSet until now
# Deleting the namespace, RBAC, Deployment and CRDs, their ScaleSets and the instances' pods (each
# with its grace period) takes seconds; a finalizer nobody removes would hold it forever.
BOUND = 90


@pytest.fixture
def cluster() -> Iterator[Any]:
    if use_external_cluster():
        pytest.skip("uninstalls the operator and its CRDs: needs a cluster of its own")
    with cluster_for_tests(nodes=2, time_scale=20.0) as running:
        yield running


@pytest.fixture
def kube(cluster: Any) -> Kube:
    kubectl(cluster, "apply", "-k", str(ROOT / "manifests"), timeout=120)
    client = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
    wait_for(lambda: _served(client), 60, "ScaleSets served")
    return client


@pytest.fixture
def operator_kubeconfig(cluster: Any, kube: Kube, tmp_path: Path) -> str:
    if not use_testbed():
        return str(cluster.kubeconfig_path)
    return service_account_kubeconfig(kube, str(cluster.kubeconfig_path), tmp_path / "operator.kubeconfig")


def _served(kube: Kube) -> bool:
    return _crd_served(kube, "scalesets")


def _fleet(kube: Kube) -> str:
    """A namespace with two ScaleSets with data disks: `keep` retains its claims, `drop` deletes them."""
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    )
    kube.create(fleet_path("scalesets", "apps"), scaleset_body("keep", 2, claims=True))
    kube.create(
        fleet_path("scalesets", "apps"),
        scaleset_body("drop", 2, claims=True, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete"}),
    )
    for name in ("keep", "drop"):
        wait_for(lambda name=name: scaleset_ready(kube, "apps", name), 90, f"{name} Ready")
    _await_garbage_collector(kube, "apps")
    return "apps"


def _await_garbage_collector(kube: Kube, namespace: str) -> None:
    """Wait until the garbage collector knows ScaleSets, as it does in a cluster where the operator has
    run for more than a minute: kube-controller-manager reads new kinds from discovery every 30 s, and
    it collects nothing whose owner's kind it cannot look up (a CRD made seconds ago)."""
    owner = kube.create(fleet_path("scalesets", namespace), scaleset_body("probe", 0))
    reference = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "name": "probe",
        "uid": owner["metadata"]["uid"],
    }
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "probe", "ownerReferences": [reference]},
    }
    kube.create(core_path("configmaps", namespace), dependent)
    kube.delete(fleet_path("scalesets", namespace, "probe"))
    wait_for(
        lambda: kube.get_or_none(core_path("configmaps", namespace, "probe")) is None,
        BOUND,
        "the garbage collector to collect what a ScaleSet owned",
    )


def _claims(kube: Kube, namespace: str, scaleset: str) -> list[str]:
    return sorted(
        c["metadata"]["name"]
        for c in kube.list(
            core_path("persistentvolumeclaims", namespace), f"fleet.scaleset.dev/scaleset={scaleset}"
        )
        if not c["metadata"].get("deletionTimestamp")
    )


def _uninstall(cluster: Any) -> float:
    started = time.monotonic()
    result = kubectl(
        cluster,
        "delete",
        "-k",
        str(ROOT / "manifests"),
        "--ignore-not-found",
        f"--timeout={BOUND}s",
        timeout=BOUND + 30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"kubectl delete -k manifests/ did not finish:\n{result.stderr}"
    assert elapsed < BOUND
    return elapsed


def _after_uninstall(cluster: Any, kube: Kube, namespace: str) -> None:
    assert not _served(kube), "the ScaleSet CRD is gone"
    wait_for(
        lambda: not kube.list(core_path("pods", namespace), "fleet.scaleset.dev/scaleset"),
        BOUND,
        "the garbage collector to delete the instances",
    )
    assert _claims(kube, namespace, "keep") == ["data-keep-0", "data-keep-1"], (
        "whenDeleted: Retain keeps them"
    )
    wait_for(lambda: not _claims(kube, namespace, "drop"), BOUND, "whenDeleted: Delete claims collected")
    started = time.monotonic()
    kubectl(cluster, "delete", "namespace", namespace, f"--timeout={BOUND}s", timeout=BOUND + 30)
    assert time.monotonic() - started < BOUND


def test_uninstall_while_the_operator_runs_waits_on_nothing_of_the_operators(
    cluster: Any, kube: Kube, operator_kubeconfig: str
) -> None:
    with OperatorThread(operator_kubeconfig, resync_seconds=5.0):
        namespace = _fleet(kube)
        for name in ("keep", "drop"):
            scaleset = kube.get(fleet_path("scalesets", namespace, name))
            assert not scaleset["metadata"].get("finalizers"), "the operator puts no finalizer on a ScaleSet"
        _uninstall(cluster)
    _after_uninstall(cluster, kube, namespace)


def test_uninstall_after_the_operator_stopped_waits_on_nothing_and_old_finalizers_were_released(
    cluster: Any, kube: Kube, operator_kubeconfig: str
) -> None:
    with OperatorThread(operator_kubeconfig, resync_seconds=5.0):
        namespace = _fleet(kube)
        # A ScaleSet as an older operator left it: kopf's finalizer for its daemon.
        old = scaleset_body("old", 1)
        old["metadata"]["finalizers"] = [FINALIZER]
        kube.create(fleet_path("scalesets", namespace), old)
        wait_for(
            lambda: not kube.get(fleet_path("scalesets", namespace, "old"))["metadata"].get("finalizers"),
            30,
            "the old finalizer released",
        )
        wait_for(lambda: scaleset_ready(kube, namespace, "old"), 90, "old Ready")
    # The operator is gone (as during `kubectl delete -k`, which deletes its Deployment first or last).
    _uninstall(cluster)
    _after_uninstall(cluster, kube, namespace)
