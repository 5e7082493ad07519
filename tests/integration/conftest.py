"""The real operator on a real API: kubesim by default; the cluster of $KUBECONFIG with KUBESIM_USE_KUBECONFIG=1."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def kubesim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The embedded cluster, or None when the tests run against a real one (kind)."""
    if _external_kubeconfig():
        yield None
        return
    from kubesim.cluster import ThreadedCluster

    path = tmp_path_factory.mktemp("kubesim") / "kubeconfig"
    # Simulated kubelet time runs 20x faster: a 1 s readiness period passes in 50 ms.
    with ThreadedCluster(nodes=3, time_scale=20.0, kubeconfig_path=str(path)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kubeconfig(kubesim: Any) -> str:
    return _external_kubeconfig() or str(kubesim.kubeconfig_path)


def _external_kubeconfig() -> str | None:
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        return os.environ.get("KUBECONFIG") or None
    return None


@pytest.fixture
def kubelet(kubesim: Any) -> Any:
    """kubesim's kubelet simulator, for what only a simulator can show (volume identities, scripted faults)."""
    if kubesim is None:
        pytest.skip(
            "needs kubesim's kubelet simulator; on a real cluster the same behaviour is shown by uids"
        )
    return kubesim.kubelet


@pytest.fixture(scope="session")
def kube(kubeconfig: str) -> Kube:
    kube = Kube.from_kubeconfig(kubeconfig)
    install_crds(kube)
    return kube


def install_crds(kube: Kube) -> None:
    """The CRDs of crds/, created (or found) and served."""
    for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        try:
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except ApiError as error:
            if error.status != 409:
                raise
    wait_for(lambda: all(_crd_served(kube, p) for p in ("scalesets", "upgradepolicies")), 10, "CRDs served")


def _crd_served(kube: Kube, plural: str) -> bool:
    try:
        kube.list(fleet_path(plural, "default"))
        return True
    except ApiError:
        return False


@pytest.fixture(scope="session")
def operator(kubeconfig: str, kube: Kube) -> Iterator[OperatorThread]:
    """The operator, serving the scheduled-events endpoint on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OperatorThread(
        kubeconfig, resync_seconds=5.0, scheduled_events_address=f"127.0.0.1:{port}"
    ) as running:
        yield running


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    for scaleset in kube.list(fleet_path("scalesets", name)):
        kube.delete(fleet_path("scalesets", name, scaleset["metadata"]["name"]))
