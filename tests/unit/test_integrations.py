"""The Argo CD health check (run by a Lua interpreter) and the Prometheus alert rules shipped in the repo."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scaleset_operator import metrics

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "docs" / "integrations" / "argocd-health.lua"
HEALTH_KEY = "resource.customizations.health.fleet.scaleset.dev_ScaleSet"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health script as Argo CD does: the object as the global `obj`, a table `hs` returned."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(LUA.read_text())
    return str(result["status"]), str(result["message"] or "")


def scaleset(
    generation: int = 2,
    observed: int = 2,
    paused: bool = False,
    phase: str = "Idle",
    **conditions: tuple[str, str],
) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "prod", "generation": generation},
        "spec": {"replicas": 3, "paused": paused},
        "status": {
            "observedGeneration": observed,
            "upgrade": {"phase": phase, "message": "waiting for spec.walkUpgradeDomain"},
            "conditions": [
                {"type": kind, "status": status, "reason": reason, "message": f"{kind} says {reason}"}
                for kind, (status, reason) in conditions.items()
            ],
        },
    }


def test_the_configmap_carries_the_tested_script() -> None:
    configmap = yaml.safe_load((ROOT / "docs" / "integrations" / "argocd-cm.yaml").read_text())
    assert configmap["metadata"]["name"] == "argocd-cm"
    assert configmap["data"][HEALTH_KEY] == LUA.read_text()


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            scaleset(
                Ready=("True", "AllInstancesHealthy"),
                Progressing=("False", "UpToDate"),
                Stalled=("False", "NotStalled"),
            ),
            "Healthy",
        ),
        (
            scaleset(
                phase="RollingForward",
                Ready=("False", "BatchInProgress"),
                Progressing=("True", "RollingUpgrade"),
                Stalled=("False", "NotStalled"),
            ),
            "Progressing",
        ),
        (
            scaleset(
                phase="Paused",
                Ready=("False", "TooManyUnhealthy"),
                Progressing=("False", "TooManyUnhealthy"),
                Stalled=("True", "TooManyUnhealthy"),
            ),
            "Degraded",
        ),
        (scaleset(Ready=("False", "PolicyNotFound"), Stalled=("True", "PolicyNotFound")), "Degraded"),
        # A batch under way says so even where a Ready=True from before is still there.
        (
            scaleset(Ready=("True", "AllInstancesHealthy"), Reconciling=("True", "BatchStarted")),
            "Progressing",
        ),
        (
            scaleset(
                Ready=("True", "AllInstancesHealthy"),
                Stalled=("False", "NotStalled"),
                Reconciling=("False", "AllInstancesHealthy"),
            ),
            "Healthy",
        ),
        (
            scaleset(
                phase="Paused",
                Ready=("False", "WaitingForWalk"),
                Progressing=("True", "RollingUpgrade"),
                Stalled=("False", "NotStalled"),
            ),
            "Suspended",
        ),
        (scaleset(paused=True, phase="RollingForward", Ready=("False", "Paused")), "Suspended"),
        # Ready from before the latest spec change counts for nothing.
        (scaleset(generation=3, observed=2, Ready=("True", "AllInstancesHealthy")), "Progressing"),
        (scaleset(), "Progressing"),
        ({"metadata": {"name": "web", "generation": 1}, "spec": {}}, "Progressing"),
    ],
)
def test_argocd_health_follows_ready_progressing_and_stalled(obj: dict[str, Any], expected: str) -> None:
    status, message = argocd_health(obj)
    assert status == expected
    assert message


def test_a_stalled_rollout_says_why() -> None:
    status, message = argocd_health(
        scaleset(Ready=("False", "TooManyUnhealthyUpgraded"), Stalled=("True", "TooManyUnhealthyUpgraded"))
    )
    assert (status, message) == (
        "Degraded",
        "TooManyUnhealthyUpgraded: Stalled says TooManyUnhealthyUpgraded",
    )


def exported_names() -> set[str]:
    # Labelled counters show samples only once counted.
    metrics.api_request("GET", None, 200)
    metrics.reconcile_pass(True, 0.01)
    collector = metrics.FleetCollector()
    collector.observe_scaleset(
        {
            "metadata": {"namespace": "n", "name": "s"},
            "spec": {"replicas": 1},
            "status": {"upgrade": {"phase": "Idle"}, "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    collector.observe_pod(
        {"metadata": {"namespace": "n", "name": "s-0", "labels": {"fleet.scaleset.dev/scaleset": "s"}}}
    )
    names = set()
    for text in (generate_latest(REGISTRY).decode(), _scrape(collector)):
        for family in text_string_to_metric_families(text):
            names |= {sample.name for sample in family.samples}
    return names


def _scrape(collector: metrics.FleetCollector) -> str:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_every_alert_uses_metrics_the_operator_exports() -> None:
    rule = yaml.safe_load((ROOT / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    names = exported_names()
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {"ScaleSetRolloutStalled", "ScaleSetTooManyUnhealthy"} <= {a["alert"] for a in alerts}
    for alert in alerts:
        used = set(re.findall(r"\b(scaleset_[a-z_]+)", alert["expr"]))
        assert used, alert["alert"]
        assert used <= names, (alert["alert"], used - names)


@pytest.mark.kubectl
def test_the_monitoring_kustomization_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests" / "monitoring")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out) if d)
    assert kinds == ["PrometheusRule", "ServiceMonitor"]
    (monitor,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ServiceMonitor"]
    service = yaml.safe_load((ROOT / "manifests" / "service.yaml").read_text())
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
