"""The Helm chart (charts/scaleset-operator) with the real helm (`make helm` builds v4 from the Go module
proxy): lint, templates of several value sets valid for the target Kubernetes, the same objects and the
same RBAC as the kustomize base of manifests/, and values the schema refuses."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.unit.test_manifests import TARGET_VERSION, grants, rendered

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scaleset-operator"
NAMESPACE = "scaleset-system"
# Labels Helm's conventions add beside those of manifests/.
HELM_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}

pytestmark = pytest.mark.kubectl


@functools.cache
def helm_binary() -> Path:
    """The helm `make helm` builds (at once when it is cached)."""
    built = subprocess.run(
        ["make", "-s", "--no-print-directory", "helm"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    return ROOT / built.stdout.strip().splitlines()[-1]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def template(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart rendered as `helm install scaleset-operator -n scaleset-system` would, CRDs included."""
    result = _template_with(values or {})
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _template_with(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(helm_binary()),
            "template",
            "scaleset-operator",
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--include-crds",
            "--kube-version",
            TARGET_VERSION,
            "--values",
            "-",
        ],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in by_kind(documents, kind) if name is None or d["metadata"]["name"] == name]
    return found


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "one replica, no election": {"replicas": 1, "leaderElection": {"enabled": False}},
    "digest and extras": {
        "image": {"digest": "sha256:" + "ab" * 32, "pullPolicy": "IfNotPresent"},
        "extraArgs": ["--verbose"],
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "podDisruptionBudget": {"enabled": False},
        "logFormat": "text",
    },
    "monitoring and network policies": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
        "networkPolicy": {"enabled": True},
    },
}


def test_helm_lint_passes_with_every_value_set() -> None:
    for name, values in VALUE_SETS.items():
        path = ROOT / ".cache" / f"chart-values-{abs(hash(name))}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(values))
        try:
            result = helm("lint", "--strict", str(CHART), "--values", str(path), check=False)
        finally:
            path.unlink()
        assert result.returncode == 0, (name, result.stdout, result.stderr)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid_against_the_target_kubernetes_schemas(name: str) -> None:
    documents = template(VALUE_SETS[name])
    assert documents
    for document in documents:
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's kinds have no schema in kubernetes-validate
        kubernetes_validate.validate(document, TARGET_VERSION, strict=True)


def normalized(document: dict[str, Any]) -> dict[str, Any]:
    """An object without what only Helm adds (its labels) and without comments' traces."""
    document = copy.deepcopy(document)
    labels = document["metadata"].get("labels") or {}
    for key in HELM_LABELS:
        labels.pop(key, None)
    return document


def keyed(documents: list[dict[str, Any]]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): normalized(d) for d in documents
    }


def test_the_chart_renders_the_objects_of_the_kustomize_base_for_the_same_choices() -> None:
    base = rendered()
    # The base's choices: NetworkPolicies where it ships them; Helm installs into a namespace it is
    # given (--create-namespace), so the base's Namespace object has no counterpart.
    chart = template({"networkPolicy": {"enabled": bool(by_kind(base, "NetworkPolicy"))}})
    base_objects = keyed([d for d in base if d["kind"] != "Namespace"])
    chart_objects = keyed(chart)
    assert sorted(chart_objects) == sorted(base_objects)
    for key, expected in base_objects.items():
        assert chart_objects[key] == expected, key


def test_the_chart_grants_exactly_the_rbac_of_manifests_whatever_the_namespaces() -> None:
    base = rendered()
    cluster_wide = template()
    assert grants(one(cluster_wide, "ClusterRole")) == grants(one(base, "ClusterRole"))
    assert one(cluster_wide, "Role")["rules"] == one(base, "Role")["rules"]

    namespaced = template(VALUE_SETS["namespaces"])
    reads = one(namespaced, "ClusterRole", "scaleset-operator")
    writes = one(namespaced, "ClusterRole", "scaleset-operator-namespaced")
    # Split, not changed: together they grant what the base grants, and kopf's observation of the
    # namespaces it was given (it lists and watches them; the testbed refused it without).
    observer = {("", "namespaces", "list"), ("", "namespaces", "watch")}
    assert grants(reads) | grants(writes) == grants(one(base, "ClusterRole")) | observer
    assert not grants(reads) & grants(writes)
    # Writes on namespaced resources only in the namespaces listed; reads and cluster-scoped kinds
    # stay cluster-wide (the scheduled-events endpoint and Host maintenance look pods up by IP and node).
    cluster_scoped = {
        "nodes",
        "namespaces",
        "customresourcedefinitions",
        "maintenanceconfigurations",
        "imagecatalogs",
    }
    for _, resource, verb in grants(writes):
        assert verb not in ("get", "list", "watch") and resource.split("/")[0] not in cluster_scoped
    for _, resource, verb in grants(reads):
        assert verb in ("get", "list", "watch") or resource in cluster_scoped
    bindings = by_kind(namespaced, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings if b["roleRef"]["kind"] == "ClusterRole") == [
        "team-a",
        "team-b",
    ]
    (container,) = one(namespaced, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--all-namespaces" not in container["args"]
    assert {"--namespace=team-a", "--namespace=team-b"} <= set(container["args"])


def test_the_chart_carries_the_generated_crds_and_the_alerts_of_manifests() -> None:
    crds = {d["metadata"]["name"]: d for d in by_kind(template(), "CustomResourceDefinition")}
    generated = {p.name.removesuffix(".yaml") for p in (ROOT / "crds").glob("*.yaml")}
    assert set(crds) == generated
    for name in generated:
        (source,) = [d for d in yaml.safe_load_all((ROOT / "crds" / f"{name}.yaml").read_text()) if d]
        assert crds[name] == source
    rule = one(template(VALUE_SETS["monitoring and network policies"]), "PrometheusRule")
    alerts = yaml.safe_load((ROOT / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"] == alerts["spec"]  # `{{ $labels.namespace }}` kept, not read as a template


def test_image_by_tag_or_digest_replicas_and_extra_args() -> None:
    (container,) = one(template(), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/scaleset-operator/scaleset-operator:0.1.0"
    documents = template(VALUE_SETS["digest and extras"])
    (container,) = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/scaleset-operator/scaleset-operator@sha256:" + "ab" * 32
    assert container["args"][-1] == "--verbose" and "--log-format=text" in container["args"]
    # Helm merges maps with the defaults: the cpu limit stays unless set to null.
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert container["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}
    assert not by_kind(documents, "PodDisruptionBudget")
    single = template(VALUE_SETS["one replica, no election"])
    assert one(single, "Deployment")["spec"]["replicas"] == 1
    (container,) = one(single, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--leader-elect" not in container["args"]
    assert not by_kind(single, "Role"), "no Lease, no Role for it"


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        (
            {"replicas": 2, "leaderElection": {"enabled": False}},
            "replicas above 1 need leaderElection.enabled",
        ),
        ({"replica": 3}, "replica"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"service": {"metricsPort": 70000}}, "metricsPort"),
    ],
)
def test_values_the_chart_cannot_honour_are_refused_naming_the_field(
    values: dict[str, Any], refusal: str
) -> None:
    result = _template_with(values)
    assert result.returncode != 0
    assert refusal in result.stderr, result.stderr


def test_artifact_hub_annotations_name_every_crd_and_the_image() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    crds = yaml.safe_load(annotations["artifacthub.io/crds"])
    generated = {p.name.removesuffix(".yaml") for p in (ROOT / "crds").glob("*.yaml")}
    assert {c["name"] for c in crds} == generated
    (image,) = yaml.safe_load(annotations["artifacthub.io/images"])
    assert image["image"].endswith(f":{chart['appVersion']}")
    for example in yaml.safe_load(annotations["artifacthub.io/crdsExamples"]):
        assert example["kind"] in {c["kind"] for c in crds}
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in pyproject, "the chart's appVersion is the package's"
