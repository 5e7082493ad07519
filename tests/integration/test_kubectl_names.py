"""Every name a user types for the four kinds, through the real kubectl, with the operator running."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.helpers import IMAGE, pods_of, scaleset_body, wait_for

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]


class Kubectl:
    """The real kubectl against one cluster, with its own discovery cache."""

    def __init__(self, kubeconfig: str, cache: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": kubeconfig, "KUBECACHEDIR": str(cache)}

    def __call__(self, *args: str, timeout: float = 60) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["kubectl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kubectl, Kube]]:
    """A cluster of this module's own with the operator, a ScaleSet `web` and one object of every kind."""
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        pytest.skip("needs a cluster with no operator running; run it on kubesim")
    from kubesim.cluster import ThreadedCluster

    tmp = tmp_path_factory.mktemp("names")
    with ThreadedCluster(nodes=2, time_scale=20.0, kubeconfig_path=str(tmp / "kubeconfig")) as cluster:
        kubeconfig = str(cluster.kubeconfig_path)
        kube = Kube.from_kubeconfig(kubeconfig)
        kubectl = Kubectl(kubeconfig, tmp / "cache")
        kubectl("apply", "-f", str(ROOT / "crds"))
        for plural in ("scalesets", "upgradepolicies", "maintenanceconfigurations", "imagecatalogs"):
            kubectl("wait", "--for=condition=Established", f"crd/{plural}.fleet.scaleset.dev")
        wait_for(lambda: _served(kube), 10, "CRDs served")
        for example in ("upgradepolicy.yaml", "maintenanceconfiguration.yaml", "imagecatalog.yaml"):
            kubectl("apply", "-f", str(ROOT / "examples" / example))
        manifest = tmp / "web.yaml"
        manifest.write_text(yaml.safe_dump(scaleset_body("web", 3)))
        kubectl("apply", "-f", str(manifest))
        with OperatorThread(kubeconfig, resync_seconds=2.0):
            kubectl("wait", "--for=condition=Ready", "scaleset/web", "--timeout=60s")
            yield kubectl, kube


def _served(kube: Kube) -> bool:
    try:
        kube.list(fleet_path("scalesets", "default"))
        return True
    except ApiError:
        return False


def names(output: str) -> list[str]:
    return sorted(output.split())


@pytest.mark.parametrize(
    "args",
    [
        ("get", "scaleset", "web"),
        ("get", "scalesets", "web"),
        ("get", "sset", "web"),
        ("get", "vmss", "web"),
        ("get", "scaleset/web"),
        ("get", "scalesets.fleet.scaleset.dev", "web"),
        ("get", "scaleset.v1alpha1.fleet.scaleset.dev/web"),
    ],
)
def test_every_name_of_a_scaleset_finds_exactly_web(
    fleet: tuple[Kubectl, Kube], args: tuple[str, ...]
) -> None:
    kubectl, _ = fleet
    assert kubectl(*args, "-o", "name").split() == ["scaleset.fleet.scaleset.dev/web"]


def test_get_scaleset_lists_only_scalesets_not_their_policies(fleet: tuple[Kubectl, Kube]) -> None:
    kubectl, _ = fleet
    for name in ("scaleset", "scalesets", "sset", "vmss"):
        assert kubectl("get", name, "-o", "name").split() == ["scaleset.fleet.scaleset.dev/web"], name
    table = kubectl("get", "scaleset").splitlines()
    assert table[0].split() == ["NAME", "DESIRED", "READY", "UPDATED", "PHASE", "UD", "AGE"]


@pytest.mark.parametrize(
    ("forms", "expected"),
    [
        (("upgradepolicy", "upgradepolicies", "upol"), ["upgradepolicy.fleet.scaleset.dev/rolling"]),
        (
            ("maintenanceconfiguration", "maintenanceconfigurations", "mcfg"),
            [
                "maintenanceconfiguration.fleet.scaleset.dev/patch-tuesday",
                "maintenanceconfiguration.fleet.scaleset.dev/weekend-nights",
            ],
        ),
        (("imagecatalog", "imagecatalogs", "icat"), ["imagecatalog.fleet.scaleset.dev/default"]),
    ],
)
def test_the_other_kinds_answer_to_singular_plural_and_short_names(
    fleet: tuple[Kubectl, Kube], forms: tuple[str, ...], expected: list[str]
) -> None:
    kubectl, _ = fleet
    for form in forms:
        assert names(kubectl("get", form, "-o", "name")) == expected, form
        first = expected[0].split("/")[1]
        assert kubectl("get", form, first, "-o", "name").split() == [expected[0]], form
        assert kubectl("get", f"{form}/{first}", "-o", "name").split() == [expected[0]], form


def test_get_fleet_lists_every_kind_and_get_all_lists_the_scaleset(fleet: tuple[Kubectl, Kube]) -> None:
    kubectl, _ = fleet
    assert names(kubectl("get", "fleet", "-o", "name")) == [
        "imagecatalog.fleet.scaleset.dev/default",
        "maintenanceconfiguration.fleet.scaleset.dev/patch-tuesday",
        "maintenanceconfiguration.fleet.scaleset.dev/weekend-nights",
        "scaleset.fleet.scaleset.dev/web",
        "upgradepolicy.fleet.scaleset.dev/rolling",
    ]
    in_all = kubectl("get", "all", "-o", "name").split()
    assert "scaleset.fleet.scaleset.dev/web" in in_all
    assert not [name for name in in_all if name.startswith("upgradepolicy")]


def test_api_resources_lists_the_four_kinds_in_the_fleet_category(fleet: tuple[Kubectl, Kube]) -> None:
    kubectl, _ = fleet
    assert names(kubectl("api-resources", "--categories=fleet", "-o", "name")) == [
        "imagecatalogs.fleet.scaleset.dev",
        "maintenanceconfigurations.fleet.scaleset.dev",
        "scalesets.fleet.scaleset.dev",
        "upgradepolicies.fleet.scaleset.dev",
    ]
    wide = kubectl("api-resources", "--api-group=fleet.scaleset.dev", "-o", "wide").splitlines()
    scalesets = next(line for line in wide if line.startswith("scalesets "))
    assert "sset,vmss" in scalesets and "fleet,all" in scalesets, scalesets


def test_explain_reads_the_schema_by_any_name(fleet: tuple[Kubectl, Kube]) -> None:
    kubectl, _ = fleet
    for name in ("scaleset.spec", "sset.spec", "vmss.spec.upgradeDomainCount"):
        out = kubectl("explain", name)
        assert "KIND:" in out and "ScaleSet" in out, out
        assert "fleet.scaleset.dev" in out
    assert "upgradeDomainCount" in kubectl("explain", "scaleset.spec")
    assert "rollingUpgrade" in kubectl("explain", "upol.spec")
    assert "window" in kubectl("explain", "mcfg.spec")
    assert "images" in kubectl("explain", "icat.spec")


def test_scale_wait_and_watch_a_rollout_by_short_name(fleet: tuple[Kubectl, Kube]) -> None:
    kubectl, kube = fleet
    assert kubectl("scale", "sset/web", "--replicas=4").strip() == "scaleset.fleet.scaleset.dev/web scaled"
    wait_for(lambda: len(pods_of(kube, "default", "web")) == 4, TIMEOUT, "scale to 4 through kubectl")
    kubectl("wait", "--for=condition=Ready", "vmss/web", "--timeout=60s")

    watch = kubectl.popen("get", "scaleset", "web", "-w", "--no-headers")
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in watch.stdout or ()], daemon=True).start()
    try:
        first = lines.get(timeout=10).split()
        assert first[:3] == ["web", "4", "4"], first
        web = kube.get(fleet_path("scalesets", "default", "web"))
        containers = web["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = f"{IMAGE}:v2"
        kube.patch(
            fleet_path("scalesets", "default", "web"),
            {"spec": {"template": {"spec": {"containers": containers}}}},
            MERGE_PATCH,
        )
        phases: list[str] = []
        while "Completed" not in phases:
            phases.append(lines.get(timeout=TIMEOUT).split()[4])
        assert "RollingForward" in phases, phases
    finally:
        watch.terminate()
        watch.wait(10)
    kubectl("wait", "--for=condition=Ready", "scaleset/web", "--timeout=60s")
    assert kubectl("get", "sset", "web", "-o", "jsonpath={.status.updatedReplicas}") == "4"
