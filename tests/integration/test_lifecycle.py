"""The operator's own life: killed mid-rollout and restarted, started by `kopf run`, and seen through kubectl."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_REVISION
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import install_crds
from tests.integration.helpers import IMAGE, pods_of, policy_body, scaleset_body, scaleset_ready, wait_for

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[str, Kube]]:
    """A cluster of this test's own, so no other operator acts on it."""
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        pytest.skip("needs a cluster with no operator running; run it on kubesim")
    from kubesim.cluster import ThreadedCluster
    from kubesim.testbed import Testbed

    cluster: ThreadedCluster | Testbed
    if os.environ.get("KUBESIM_TESTBED") == "1":
        cluster = Testbed(nodes=2, time_scale=20.0, state_dir=tmp_path / "testbed")
    else:
        cluster = ThreadedCluster(nodes=2, time_scale=20.0, kubeconfig_path=str(tmp_path / "kubeconfig"))
    with cluster:
        kubeconfig = str(cluster.kubeconfig_path)
        kube = Kube.from_kubeconfig(kubeconfig)
        install_crds(kube)
        yield kubeconfig, kube


def _revisions(kube: Kube) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"]["labels"][LABEL_REVISION]
        for p in pods_of(kube, "default", "web")
    }


def test_operator_killed_mid_rollout_is_carried_on_by_the_next(own_cluster: tuple[str, Kube]) -> None:
    kubeconfig, kube = own_cluster
    kube.create(
        fleet_path("upgradepolicies", "default"),
        policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "10s"}),
    )
    kube.create(fleet_path("scalesets", "default"), scaleset_body("web", 5, policy="slow"))
    with OperatorThread(kubeconfig, resync_seconds=2.0):
        before = wait_for(lambda: scaleset_ready(kube, "default", "web"), TIMEOUT, "web Ready")
        containers = before["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = f"{IMAGE}:v2"
        kube.patch(
            fleet_path("scalesets", "default", "web"),
            {"spec": {"template": {"spec": {"containers": containers}}}},
            MERGE_PATCH,
        )
        batch = wait_for(
            lambda: (
                (kube.get(fleet_path("scalesets", "default", "web")).get("status") or {})
                .get("upgrade", {})
                .get("currentBatch")
            ),
            TIMEOUT,
            "the first batch to be recorded",
        )
    # The operator is gone; the rollout's state is all in the API.
    frozen = _revisions(kube)
    status = kube.get(fleet_path("scalesets", "default", "web"))["status"]
    assert status["upgrade"]["locked"] is True
    assert status["upgrade"]["currentBatch"]["instances"] == batch["instances"]
    assert _revisions(kube) == frozen, "nothing moves without an operator"

    # The long pause only had to hold the first batch while the operator was gone: the next operator
    # reads the shorter one like any policy change, and the four batches left take seconds, not 40.
    kube.patch(
        fleet_path("upgradepolicies", "default", "slow"),
        {"spec": {"rollingUpgrade": {"pauseTimeBetweenBatches": "1s"}}},
        MERGE_PATCH,
    )
    with OperatorThread(kubeconfig, resync_seconds=2.0):
        after = wait_for(
            lambda: (
                (s := scaleset_ready(kube, "default", "web"))
                and s["status"]["currentRevision"] != before["status"]["currentRevision"]
                and s
            ),
            TIMEOUT,
            "the restarted operator to finish the rollout",
        )
    assert set(_revisions(kube).values()) == {after["status"]["currentRevision"]}
    history = after["status"]["upgrade"]["history"]
    assert history[-1]["result"] == "Completed"


def test_kopf_run_of_the_module_runs_the_operator(own_cluster: tuple[str, Kube]) -> None:
    kubeconfig, kube = own_cluster
    kopf = shutil.which("kopf", path=str(Path(sys.executable).parent))
    assert kopf, "kopf is installed with the project"
    process = subprocess.Popen(
        [kopf, "run", "--standalone", "--all-namespaces", "-m", "scaleset_operator.runner"],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        kube.create(fleet_path("scalesets", "default"), scaleset_body("web", 2))
        wait_for(lambda: scaleset_ready(kube, "default", "web"), TIMEOUT, "web Ready under kopf run")
    finally:
        process.terminate()
        process.wait(20)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_shows_columns_waits_for_ready_and_scales(own_cluster: tuple[str, Kube]) -> None:
    kubeconfig, kube = own_cluster

    def kubectl(*args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    with OperatorThread(kubeconfig, resync_seconds=2.0):
        kubectl("apply", "-f", str(ROOT / "examples" / "upgradepolicy.yaml"))
        body = scaleset_body("web", 3)
        manifest = Path(kubeconfig).parent / "web.yaml"
        manifest.write_text(yaml.safe_dump(body))
        kubectl("apply", "-f", str(manifest))
        kubectl("wait", "--for=condition=Ready", "scaleset/web", "--timeout=60s")
        table = kubectl("get", "scalesets")
        header = table.splitlines()[0].split()
        assert header[:4] == ["NAME", "DESIRED", "READY", "UPDATED"], table
        assert table.splitlines()[1].split()[:4] == ["web", "3", "3", "3"], table
        assert "web" in kubectl("get", "vmss")
        kubectl("scale", "scaleset/web", "--replicas=4")
        wait_for(lambda: len(pods_of(kube, "default", "web")) == 4, TIMEOUT, "scale to 4 through kubectl")
        kubectl("wait", "--for=condition=Ready", "scaleset/web", "--timeout=60s")
        pods = kube.list(core_path("pods", "default"))
        assert len([p for p in pods if p["metadata"]["name"].startswith("web-")]) == 4


def test_scaleset_operator_command_runs_one_namespace_and_stops_on_sigterm(
    own_cluster: tuple[str, Kube],
) -> None:
    kubeconfig, kube = own_cluster
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mine"}}
    )
    scaleset = shutil.which("scaleset", path=str(Path(sys.executable).parent))
    assert scaleset, "the scaleset command is installed with the project"
    process = subprocess.Popen(
        [
            scaleset,
            "operator",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            "mine",
            "--metrics-address=127.0.0.1:0",
            "--scheduled-events-address=127.0.0.1:0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        kube.create(fleet_path("scalesets", "mine"), scaleset_body("web", 2))
        kube.create(fleet_path("scalesets", "default"), scaleset_body("other", 2))
        wait_for(lambda: scaleset_ready(kube, "mine", "web"), TIMEOUT, "web Ready in the watched namespace")
        assert pods_of(kube, "default", "other") == [], (
            "a namespace the operator does not watch is left alone"
        )
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr[-2000:]
