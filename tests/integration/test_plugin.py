"""`kubectl scaleset ...` through the real kubectl, which finds the installed plugin on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.helpers import IMAGE, policy_body, scaleset_body, scaleset_ready, set_image, wait_for
from tests.unit.test_integrations import argocd_health

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
NS = "prod"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]


class Plugin:
    def __init__(self, kubeconfig: str, tmp: Path) -> None:
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "kubectl-scaleset").exists(), "the plugin is installed with the project"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": kubeconfig,
            "KUBECACHEDIR": str(tmp / "cache"),
            "COLUMNS": "120",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, timeout=60, env=self.env, check=False
        )

    def __call__(self, *args: str) -> str:
        result = self.run("scaleset", *args)
        assert result.returncode == 0, f"kubectl scaleset {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def manual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Plugin, Kube, str]]:
    """An operator and a Manual-mode ScaleSet `web` of 4 instances over 2 domains in namespace prod."""
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        pytest.skip("needs a cluster with no operator running; run it on kubesim")
    from kubesim.cluster import ThreadedCluster

    tmp = tmp_path_factory.mktemp("plugin")
    with ThreadedCluster(nodes=2, time_scale=20.0, kubeconfig_path=str(tmp / "kubeconfig")) as cluster:
        kubeconfig = str(cluster.kubeconfig_path)
        kube = Kube.from_kubeconfig(kubeconfig)
        for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
            kube.create(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(crd_file.read_text()),
            )
        wait_for(lambda: _served(kube), 10, "CRDs served")
        kube.create(
            core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        )
        kube.create(
            fleet_path("upgradepolicies", NS),
            policy_body(
                "manual",
                mode="Manual",
                rollingUpgrade={"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50},
            ),
        )
        kube.create(
            fleet_path("scalesets", NS), scaleset_body("web", 4, policy="manual", upgrade_domain_count=2)
        )
        with OperatorThread(kubeconfig, resync_seconds=2.0):
            wait_for(lambda: scaleset_ready(kube, NS, "web"), TIMEOUT, "web Ready")
            yield Plugin(kubeconfig, tmp), kube, kubeconfig


def _served(kube: Kube) -> bool:
    try:
        kube.list(fleet_path("scalesets", "default"))
        return True
    except ApiError:
        return False


def _upgrade(kube: Kube) -> dict[str, object]:
    return (kube.get(fleet_path("scalesets", NS, "web")).get("status") or {}).get("upgrade") or {}


def test_status_walk_history_pause_and_resume_through_kubectl(
    manual: tuple[Plugin, Kube, str], tmp_path: Path
) -> None:
    plugin, kube, _ = manual
    assert argocd_health(kube.get(fleet_path("scalesets", NS, "web")))[0] == "Healthy"
    out = plugin("status", "web", "-n", NS)
    assert f"ScaleSet {NS}/web" in out and "4/4 ready" in out, out
    assert "Upgrade domains" in out
    rows = [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]
    assert [row[:5] for row in rows] == [
        ["0", "2", rows[0][2], "2/2", "2/2"],
        ["1", "2", rows[0][2], "2/2", "2/2"],
    ], out

    old = kube.get(fleet_path("scalesets", NS, "web"))["status"]["currentRevision"]
    set_image(kube, NS, "web", f"{IMAGE}:v2")
    wait_for(
        lambda: _upgrade(kube).get("reason") == "WaitingForWalk", TIMEOUT, "the rollout to wait for a walk"
    )
    # Argo CD's view of the same objects, through the health script of docs/integrations.
    assert argocd_health(kube.get(fleet_path("scalesets", NS, "web")))[0] == "Suspended"
    waiting = plugin("status", "web", "-n", NS)
    assert f"Rolling {old} ->" in waiting and "0/4" in waiting, waiting
    assert "WaitingForWalk" in waiting

    new = kube.get(fleet_path("scalesets", NS, "web"))["status"]["updateRevision"]
    walked = plugin("walk", "web", "0", "-n", NS)
    # The walk names the update it releases, and the operator answers.
    assert f"(fleet.scaleset.dev/walk=0@{new})" in walked, walked
    assert f"Accepted: Upgrade domain 0 of {new} may be updated." in walked, walked
    wait_for(
        lambda: (
            (s := kube.get(fleet_path("scalesets", NS, "web"))["status"]).get("updatedReplicas") == 2
            and (s.get("upgrade") or {}).get("reason") == "WaitingForWalk"
        ),
        TIMEOUT,
        "domain 0 upgraded",
    )
    halfway = plugin("status", "web", "-n", NS)
    assert "2/4" in halfway and "(mixed)" not in halfway, halfway

    assert plugin("pause", "web", "-n", NS).strip() == "scaleset.fleet.scaleset.dev/web paused"
    assert kube.get(fleet_path("scalesets", NS, "web"))["spec"]["paused"] is True
    assert plugin("resume", "web", "-n", NS).strip() == "scaleset.fleet.scaleset.dev/web resumed"
    assert kube.get(fleet_path("scalesets", NS, "web"))["spec"]["paused"] is False

    plugin("walk", "web", "1", "-n", NS)
    done = wait_for(
        lambda: (s := scaleset_ready(kube, NS, "web")) and s["status"]["currentRevision"] != old and s,
        TIMEOUT,
        "the walk to finish",
    )
    assert argocd_health(done)[0] == "Healthy"
    history = plugin("history", "web", "-n", NS)
    assert "Completed" in history and old[:8] in history, history
    assert done["status"]["currentRevision"] in history
    assert "current, update" in history

    # The finished walk drawn: a row per domain, and every instance of domain 0 updated before any of
    # domain 1, since domain 1 waited for its walk (Manual mode: nothing moves until walked).
    drawing = tmp_path / "walk.svg"
    plugin("history", "web", "-n", NS, "--svg", str(drawing))
    svg = "{http://www.w3.org/2000/svg}"
    groups = list(ET.parse(drawing).getroot().iter(f"{svg}g"))
    rows = [g.get("data-upgrade-domain") for g in groups if g.get("class") == "upgrade-domain"]
    marks = [g.get("data-upgrade-domain") for g in groups if g.get("class") == "instance"]
    assert rows == ["0", "1"] and marks == ["0", "0", "1", "1"], (rows, marks)


def test_mistakes_are_one_sentence_naming_the_field_or_object(manual: tuple[Plugin, Kube, str]) -> None:
    plugin, _, _ = manual
    result = plugin.run("scaleset", "walk", "web", "2", "-n", NS)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: upgrade domain 2 does not exist: spec.upgradeDomainCount of ScaleSet "web" is 2, '
        "so domains are 0 to 1."
    )
    result = plugin.run("scaleset", "status", "nope", "-n", NS)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        'error: ScaleSet "nope" not found in namespace "prod".',
    )
    result = plugin.run("scaleset", "status", "web", "-n", NS, "--context", "no-such-context")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no-such-context" in result.stderr


def test_kubeconfig_and_context_flags_as_kubectls(manual: tuple[Plugin, Kube, str], tmp_path: Path) -> None:
    plugin, _, kubeconfig = manual
    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = config["contexts"][0]
    context["context"]["namespace"] = NS
    (tmp_path / "elsewhere").write_text(yaml.safe_dump(config))
    env_without = {k: v for k, v in plugin.env.items() if k != "KUBECONFIG"}
    result = subprocess.run(
        [
            "kubectl",
            "scaleset",
            "status",
            "web",
            "--kubeconfig",
            str(tmp_path / "elsewhere"),
            "--context",
            context["name"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env_without, "HOME": str(tmp_path)},
        check=False,
    )
    # The namespace comes from the context, as kubectl takes it.
    assert result.returncode == 0, result.stderr
    assert f"ScaleSet {NS}/web" in result.stdout


def test_status_watch_prints_each_change_until_stopped(manual: tuple[Plugin, Kube, str]) -> None:
    plugin, kube, _ = manual
    watch = subprocess.Popen(
        ["kubectl", "scaleset", "status", "web", "-n", NS, "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plugin.env,
    )
    try:
        time.sleep(2)
        kube.patch(fleet_path("scalesets", NS, "web"), {"spec": {"paused": True}})
        time.sleep(2)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
        kube.patch(fleet_path("scalesets", NS, "web"), {"spec": {"paused": False}})
    assert out.count(f"ScaleSet {NS}/web") >= 1, out


def test_kubectl_completes_the_plugins_commands_and_flags(manual: tuple[Plugin, Kube, str]) -> None:
    plugin, _, _ = manual
    commands = plugin.run("__complete", "scaleset", "")
    assert commands.returncode == 0, commands.stderr
    offered = commands.stdout.split()
    assert {"status", "history", "walk", "pause", "resume", "swap"} <= set(offered), offered
    flags = plugin.run("__complete", "scaleset", "status", "--k").stdout.split()
    assert "--kubeconfig" in flags, flags
