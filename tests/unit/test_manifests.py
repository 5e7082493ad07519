"""manifests/ rendered by `kubectl kustomize`: valid for the target Kubernetes, hardened, least privilege."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from scaleset_operator.api import crdgen

ROOT = Path(__file__).resolve().parents[2]
# The oldest Kubernetes the manifests are written for (kubectl 1.32 renders them here).
TARGET_VERSION = "1.32.0"

pytestmark = pytest.mark.kubectl

# Every API call the operator makes, (group, resource, verb): what its code calls through Kube
# (control/, leader.py) and what kopf calls for the handlers registered in handlers/.
CLUSTER_CALLS = {
    ("fleet.scaleset.dev", "scalesets", "get"),  # the reconciler reads its ScaleSet
    ("fleet.scaleset.dev", "scalesets", "list"),  # kopf's watch
    ("fleet.scaleset.dev", "scalesets", "watch"),
    ("fleet.scaleset.dev", "scalesets", "patch"),  # annotations consumed; kopf releases an old finalizer
    ("fleet.scaleset.dev", "scalesets/status", "patch"),
    ("fleet.scaleset.dev", "upgradepolicies", "get"),
    ("fleet.scaleset.dev", "upgradepolicies", "list"),
    ("fleet.scaleset.dev", "upgradepolicies", "watch"),
    ("fleet.scaleset.dev", "maintenanceconfigurations", "list"),  # windows, read each pass
    ("fleet.scaleset.dev", "maintenanceconfigurations", "watch"),  # kopf wakes the ScaleSets
    ("fleet.scaleset.dev", "imagecatalogs", "list"),  # published versions, read each pass
    ("fleet.scaleset.dev", "imagecatalogs", "watch"),  # kopf wakes the ScaleSets
    ("", "pods", "get"),  # a scheduled-event annotation re-read after a conflict
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods", "create"),  # also the dry run of each new template
    ("", "pods", "patch"),
    ("", "pods", "delete"),  # a finished or unscheduled pod (nothing to disrupt)
    ("", "pods/eviction", "create"),  # every other removal, so PodDisruptionBudgets hold
    ("policy", "poddisruptionbudgets", "get"),  # spec.disruptionBudget: the ScaleSet's own budget
    ("policy", "poddisruptionbudgets", "create"),
    ("policy", "poddisruptionbudgets", "patch"),
    ("policy", "poddisruptionbudgets", "delete"),
    ("", "persistentvolumeclaims", "get"),
    ("", "persistentvolumeclaims", "list"),
    ("", "persistentvolumeclaims", "create"),
    ("", "persistentvolumeclaims", "patch"),  # owner references that follow whenDeleted
    ("", "persistentvolumeclaims", "delete"),
    ("", "services", "list"),  # Staged mode: the Services that select the instances
    ("", "services", "patch"),  # the slot key of their selector: pinned, then swapped
    ("", "resourcequotas", "list"),  # the pods a staged set may add
    ("apps", "controllerrevisions", "get"),
    ("apps", "controllerrevisions", "list"),
    ("apps", "controllerrevisions", "create"),
    ("apps", "controllerrevisions", "delete"),
    ("", "events", "create"),
    ("", "nodes", "list"),  # Host maintenance: cordoned and labelled nodes
    ("", "nodes", "watch"),
    ("", "nodes", "patch"),  # the maintenance label set to ready (after pending or freeze)
    ("", "namespaces", "get"),  # namespace labels select maintenance configurations
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),  # kopf's resource observer
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}
# Only with manifests/components/token-review (token identity of the scheduled-events endpoint).
TOKEN_REVIEW_CALLS = {("authentication.k8s.io", "tokenreviews", "create")}
NAMESPACE_CALLS = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}


@functools.cache
def _rendered(directory: Path = ROOT / "manifests") -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def rendered() -> list[dict[str, Any]]:
    return copy.deepcopy(_rendered())


def one(kind: str) -> dict[str, Any]:
    (found,) = [d for d in rendered() if d["kind"] == kind]
    return found


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_every_object_is_valid_against_the_target_kubernetes_schemas() -> None:
    documents = rendered()
    assert sorted(d["kind"] for d in documents) == sorted(
        ["CustomResourceDefinition"] * 4
        + ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
        + ["Deployment", "PodDisruptionBudget", "Service", "NetworkPolicy", "NetworkPolicy"]
    )
    for document in documents:
        # strict: unknown fields are errors too, as the API server's field validation makes them.
        kubernetes_validate.validate(document, TARGET_VERSION, strict=True)
        if document["kind"] not in (
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
        ):
            assert document["metadata"]["namespace"] == "scaleset-system", document["metadata"]


def test_the_validator_refuses_a_broken_deployment() -> None:
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = (
        "yes"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, TARGET_VERSION, strict=True)
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, TARGET_VERSION, strict=True)


def test_manifests_carry_the_generated_crds() -> None:
    crds = {d["metadata"]["name"]: d for d in rendered() if d["kind"] == "CustomResourceDefinition"}
    for crd in crdgen.build_crds():
        assert crds[crd["metadata"]["name"]]["spec"] == crd["spec"]


def test_the_operator_pod_is_hardened() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in security
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert set(resources["limits"]) == {"cpu", "memory"}
        # The only writable place is an emptyDir at /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts == {"/tmp": "tmp"} and "emptyDir" in volumes["tmp"]
    # The restricted Pod Security Standard is enforced on the namespace, so the API server checks it too.
    assert one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_two_replicas_elect_a_leader_probe_kopfs_health_endpoint_and_keep_one_through_drains() -> None:
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "scaleset-operator"
    assert "command" not in container, "the image's entrypoint is `scaleset operator`"
    args = container["args"]
    assert {"--all-namespaces", "--leader-elect", "--metrics-address=:9090", "--log-format=json"} <= set(args)
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}, probe
    assert ports["healthz"] == 8080
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    env = {
        item["name"]: item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        for item in container["env"]
    }
    assert env["POD_NAME"] == "metadata.name"
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service")
    served = {port["port"]: ports[port["targetPort"]] for port in service["spec"]["ports"]}
    assert served == {8090: 8090, 9090: 9090}
    assert service["spec"]["selector"].items() <= labels.items()


def test_rbac_grants_exactly_the_calls_the_operator_makes_and_no_wildcards() -> None:
    cluster_role, role = one("ClusterRole"), one("Role")
    for rules in (cluster_role["rules"], role["rules"]):
        for rule in rules:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            assert "resourceNames" not in rule or rule["resourceNames"], rule
    assert grants(cluster_role) == CLUSTER_CALLS
    assert grants(role) == NAMESPACE_CALLS
    for binding, target in ((one("ClusterRoleBinding"), cluster_role), (one("RoleBinding"), role)):
        assert binding["roleRef"]["name"] == target["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "scaleset-operator", "namespace": "scaleset-system"}
        ]


def test_every_resource_the_operator_code_names_is_in_the_rbac() -> None:
    # A new call on a new resource must come with its permission: the paths the operator builds name it.
    sources = [
        path
        for path in (ROOT / "operator" / "scaleset_operator").rglob("*.py")
        if path.name not in ("livedemo.py", "demo.py") and "cli" not in path.parts
    ]
    named = set()
    for path in sources:
        text = path.read_text()
        named |= set(re.findall(r'(?:core_path|fleet_path)\(\s*"([a-z]+)"', text))
        named |= set(re.findall(r'group_path\(\s*"[a-z.]+",\s*"v1",\s*"([a-z]+)"', text))
    assert named, "the operator's calls were found"
    granted = {resource for _, resource, _ in CLUSTER_CALLS | NAMESPACE_CALLS | TOKEN_REVIEW_CALLS}
    assert named <= granted, named - granted


def policy(name: str) -> dict[str, Any]:
    (found,) = [d for d in rendered() if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == name]
    return found


def test_only_instance_pods_reach_the_scheduled_events_port_and_only_monitoring_the_metrics_port() -> None:
    pod = one("Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for name, port, source in (
        (
            "scaleset-operator-scheduled-events",
            "scheduled-evts",
            {
                "namespaceSelector": {},
                "podSelector": {
                    "matchExpressions": [{"key": "fleet.scaleset.dev/scaleset", "operator": "Exists"}]
                },
            },
        ),
        (
            "scaleset-operator-metrics",
            "metrics",
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        ),
    ):
        spec = policy(name)["spec"]
        # It selects the operator's pods, and isolates them for ingress.
        assert spec["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}] and port in ports
        assert rule["from"] == [source]
    # Between them, the two policies open no other port.
    opened = {
        p["port"]
        for n in ("scaleset-operator-scheduled-events", "scaleset-operator-metrics")
        for p in policy(n)["spec"]["ingress"][0]["ports"]
    }
    assert opened == {"scheduled-evts", "metrics"}


def test_token_identity_adds_exactly_tokenreview_create_and_the_flag(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    overlay = tmp_path_factory.mktemp("overlay")
    base = Path(os.path.relpath(ROOT / "manifests", overlay))
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(base)],
                "components": [str(base / "components" / "token-review")],
            }
        )
    )
    documents = copy.deepcopy(_rendered(overlay))
    for document in documents:
        kubernetes_validate.validate(document, TARGET_VERSION, strict=True)
    roles = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ClusterRole"}
    assert grants(roles["scaleset-operator"]) == CLUSTER_CALLS, "the base role is unchanged"
    assert grants(roles["scaleset-operator-token-review"]) == TOKEN_REVIEW_CALLS
    (binding,) = [
        d
        for d in documents
        if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "scaleset-operator-token-review"
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "scaleset-operator", "namespace": "scaleset-system"}
    ]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert (
        "--scheduled-events-identity=token" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert not any(
        (d["kind"] == "ClusterRole" and ("authentication.k8s.io", "tokenreviews", "create") in grants(d))
        for d in rendered()
    ), "the base grants no TokenReview"
