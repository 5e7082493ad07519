"""The kubesim API server through the real kubectl binary: apply, get, watch, patch, scale, delete, wait."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.kubesim.conftest import WIDGET_CRD, wait_until

from kubesim.testing import KUBECTL, kubectl

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed"),
]

KUBESIM_OPTIONS = {"kubelet": False}


def dump(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def widget_yaml(name: str, namespace: str, replicas: int = 1, **spec: Any) -> str:
    body = {
        "apiVersion": "test.kubesim.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, **spec},
    }
    return dump(body)


@pytest.fixture(scope="module")
def widgets(kubesim_cluster: Any) -> str:
    out = kubectl(kubesim_cluster, "apply", "-f", "-", input=dump(WIDGET_CRD)).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.test.kubesim.dev" in out
    kubectl(
        kubesim_cluster,
        "wait",
        "--for=condition=Established",
        "crd/widgets.test.kubesim.dev",
        "--timeout=10s",
    )
    # A real API server serves the kind (and kubectl finds it in discovery) a moment after that.
    wait_until(
        lambda: kubectl(kubesim_cluster, "get", "widgets", "-A", check=False).returncode == 0,
        timeout=60,
        what="widgets served",
    )
    return "widgets"


@pytest.fixture
def ns(kubesim_cluster: Any) -> Iterator[str]:
    name = f"k-{uuid.uuid4().hex[:8]}"
    kubectl(kubesim_cluster, "create", "namespace", name)
    yield name
    kubectl(kubesim_cluster, "delete", "namespace", name, "--wait=false", check=False)


def get_json(cluster: Any, *args: str) -> Any:
    return json.loads(kubectl(cluster, "get", *args, "-o", "json").stdout)


def test_apply_crd_then_custom_object_and_get_prints_its_columns(
    kubesim_cluster: Any, widgets: str, ns: str
) -> None:
    out = kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("alpha", ns, 3)).stdout
    assert out.strip() == "widget.test.kubesim.dev/alpha created"
    table = kubectl(kubesim_cluster, "get", "widgets", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "COLOR", "READY", "AGE"]
    assert table[1].split()[:3] == ["alpha", "3", "blue"]
    short = kubectl(kubesim_cluster, "get", "wd", "alpha", "-n", ns, "--no-headers").stdout
    assert short.split()[0] == "alpha"
    in_category = kubectl(kubesim_cluster, "get", "kubesim", "-n", ns, "-o", "name").stdout
    assert in_category.strip() == "widget.test.kubesim.dev/alpha"


def test_reapply_configures_and_unchanged_apply_is_reported(
    kubesim_cluster: Any, widgets: str, ns: str
) -> None:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("beta", ns, 1, size="s"))
    assert (
        "configured" in kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("beta", ns, 2)).stdout
    )
    assert (
        "unchanged" in kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("beta", ns, 2)).stdout
    )
    obj = get_json(kubesim_cluster, "widget", "beta", "-n", ns)
    # Client-side apply removes what the last applied configuration had and this one lacks.
    assert obj["spec"] == {"replicas": 2, "color": "blue"}
    assert obj["metadata"]["generation"] == 2


def test_server_side_apply_through_kubectl(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    out = kubectl(
        kubesim_cluster, "apply", "--server-side", "-f", "-", input=widget_yaml("ssa", ns, 4)
    ).stdout
    assert "serverside-applied" in out
    obj = get_json(kubesim_cluster, "widget", "ssa", "-n", ns, "--show-managed-fields")
    assert obj["metadata"]["managedFields"][0]["manager"] == "kubectl"
    assert obj["metadata"]["managedFields"][0]["operation"] == "Apply"


def test_strict_validation_refuses_unknown_fields(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    result = kubectl(
        kubesim_cluster, "apply", "-f", "-", input=widget_yaml("bad", ns, 1, bogus=1), check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.bogus"' in result.stderr


def test_invalid_object_reports_the_field(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    result = kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("neg", ns, -2), check=False)
    assert result.returncode != 0
    assert "spec.replicas" in result.stderr and "is invalid" in result.stderr


def test_patch_merge_json_and_strategic(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("p", ns, 1))
    kubectl(
        kubesim_cluster, "patch", "widget", "p", "-n", ns, "--type=merge", "-p", '{"spec":{"color":"red"}}'
    )
    kubectl(
        kubesim_cluster,
        "patch",
        "widget",
        "p",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":5}]',
    )
    assert get_json(kubesim_cluster, "widget", "p", "-n", ns)["spec"] == {"replicas": 5, "color": "red"}

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "smp", "namespace": ns},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
    }
    kubectl(kubesim_cluster, "apply", "-f", "-", input=dump(pod))
    # Strategic merge: containers merge by name, so only b's image changes.
    kubectl(
        kubesim_cluster,
        "patch",
        "pod",
        "smp",
        "-n",
        ns,
        "-p",
        '{"spec":{"containers":[{"name":"b","image":"b:2"}]}}',
    )
    images = {
        c["name"]: c["image"] for c in get_json(kubesim_cluster, "pod", "smp", "-n", ns)["spec"]["containers"]
    }
    assert images == {"a": "a:1", "b": "b:2"}


def test_pod_spec_stays_immutable_except_images(kubesim_cluster: Any, ns: str) -> None:
    kubectl(kubesim_cluster, "run", "imm", "-n", ns, "--image", "app:1")
    result = kubectl(
        kubesim_cluster,
        "patch",
        "pod",
        "imm",
        "-n",
        ns,
        "-p",
        '{"spec":{"restartPolicy":"Never"}}',
        check=False,
    )
    assert result.returncode != 0 and "Forbidden" in result.stderr


def test_scale_through_the_scale_subresource(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("s", ns, 1))
    assert "scaled" in kubectl(kubesim_cluster, "scale", "widget/s", "-n", ns, "--replicas=4").stdout
    assert get_json(kubesim_cluster, "widget", "s", "-n", ns)["spec"]["replicas"] == 4
    result = kubectl(
        kubesim_cluster, "scale", "widget/s", "-n", ns, "--replicas=6", "--current-replicas=1", check=False
    )
    assert result.returncode != 0


def test_label_and_field_selectors_and_output_formats(kubesim_cluster: Any, ns: str) -> None:
    for name, tier in (("cm-a", "web"), ("cm-b", "db"), ("cm-c", "web")):
        kubectl(kubesim_cluster, "create", "configmap", name, "-n", ns)
        kubectl(kubesim_cluster, "label", "configmap", name, "-n", ns, f"tier={tier}")
    names = kubectl(
        kubesim_cluster, "get", "cm", "-n", ns, "-l", "tier in (web)", "-o", "name"
    ).stdout.split()
    assert names == ["configmap/cm-a", "configmap/cm-c"]
    picked = kubectl(
        kubesim_cluster,
        "get",
        "cm",
        "-n",
        ns,
        "--field-selector",
        "metadata.name=cm-b",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ).stdout
    assert picked == "cm-b"
    chunked = kubectl(
        kubesim_cluster, "get", "cm", "-n", ns, "-l", "tier", "--chunk-size=1", "--no-headers"
    ).stdout
    assert [line.split()[0] for line in chunked.splitlines()] == ["cm-a", "cm-b", "cm-c"]


def test_get_pods_shows_default_columns(kubesim_cluster: Any, ns: str) -> None:
    kubectl(kubesim_cluster, "run", "web", "-n", ns, "--image", "nginx:1.27")
    lines = kubectl(kubesim_cluster, "get", "pods", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:4] == ["web", "0/1", "Pending", "0"]


def test_get_watch_prints_changes(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("watched", ns, 1))
    env = {**os.environ, "KUBECONFIG": str(kubesim_cluster.kubeconfig_path)}
    with subprocess.Popen(
        [KUBECTL, "get", "widgets", "-n", ns, "-w", "--request-timeout=20s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        wait_until(lambda: len(lines) >= 2, what="kubectl get -w to print the initial table")
        kubectl(
            kubesim_cluster,
            "patch",
            "widget",
            "watched",
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec":{"replicas":9}}',
        )
        wait_until(
            lambda: any(line.split()[:2] == ["watched", "9"] for line in lines), what="the change printed"
        )
        proc.terminate()
    assert lines[0].split() == ["NAME", "REPLICAS", "COLOR", "READY", "AGE"]


def test_delete_cascades_to_owned_objects(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("owner", ns, 1))
    owner_uid = get_json(kubesim_cluster, "widget", "owner", "-n", ns)["metadata"]["uid"]
    ref = {"apiVersion": "test.kubesim.dev/v1", "kind": "Widget", "name": "owner", "uid": owner_uid}
    children = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"child-{i}", "namespace": ns, "ownerReferences": [ref]},
        }
        for i in range(2)
    ]
    kubectl(kubesim_cluster, "apply", "-f", "-", input=dump(*children))
    out = kubectl(kubesim_cluster, "delete", "widget", "owner", "-n", ns, "--cascade=background").stdout
    assert 'widget.test.kubesim.dev "owner" deleted' in out
    # A real garbage collector watches a new custom kind only from its next discovery sync (30 s).
    wait_until(
        lambda: not kubectl(kubesim_cluster, "get", "cm", "-n", ns, "-o", "name").stdout.count("child-"),
        timeout=60,
        what="children collected",
    )


def test_delete_with_orphan_and_foreground_cascade(kubesim_cluster: Any, ns: str) -> None:
    kubectl(kubesim_cluster, "create", "configmap", "o", "-n", ns)
    kubectl(kubesim_cluster, "create", "configmap", "f", "-n", ns)
    for owner in ("o", "f"):
        uid = get_json(kubesim_cluster, "cm", owner, "-n", ns)["metadata"]["uid"]
        dependent = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{owner}-dep",
                "namespace": ns,
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid}],
            },
        }
        kubectl(kubesim_cluster, "apply", "-f", "-", input=dump(dependent))
    kubectl(kubesim_cluster, "delete", "cm", "o", "-n", ns, "--cascade=orphan")
    kubectl(kubesim_cluster, "delete", "cm", "f", "-n", ns, "--cascade=foreground")
    remaining = kubectl(kubesim_cluster, "get", "cm", "-n", ns, "-o", "name").stdout.split()
    assert "configmap/o-dep" in remaining
    assert not {"configmap/o", "configmap/f", "configmap/f-dep"} & set(remaining)


def test_wait_for_a_condition_set_later(kubesim_cluster: Any, widgets: str, ns: str) -> None:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=widget_yaml("slow", ns, 1))

    def become_ready() -> None:
        time.sleep(0.5)
        kubectl(
            kubesim_cluster,
            "patch",
            "widget",
            "slow",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}',
        )

    writer = threading.Thread(target=become_ready)
    writer.start()
    out = kubectl(
        kubesim_cluster, "wait", "--for=condition=Ready", "widget/slow", "-n", ns, "--timeout=15s"
    ).stdout
    writer.join()
    assert "condition met" in out
    assert (
        kubectl(kubesim_cluster, "get", "widget", "slow", "-n", ns, "--no-headers").stdout.split()[3]
        == "True"
    )


def test_delete_namespace_waits_for_its_contents(kubesim_cluster: Any) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    kubectl(kubesim_cluster, "create", "namespace", name)
    kubectl(kubesim_cluster, "create", "configmap", "x", "-n", name)
    assert (
        f'namespace "{name}" deleted'
        in kubectl(kubesim_cluster, "delete", "namespace", name, "--timeout=20s").stdout
    )
    result = kubectl(kubesim_cluster, "get", "namespace", name, check=False)
    assert result.returncode != 0 and "NotFound" in result.stderr


def test_api_resources_lists_custom_kinds(kubesim_cluster: Any, widgets: str) -> None:
    out = kubectl(kubesim_cluster, "api-resources", "--api-group=test.kubesim.dev").stdout
    assert out.splitlines()[1].split() == ["widgets", "wd", "test.kubesim.dev/v1", "true", "Widget"]


@pytest.mark.kubesim(kubelet=True, nodes=2, time_scale=20.0)
def test_kubelet_runs_pods_that_kubectl_waits_for_and_deletes(fresh_kubesim_cluster: Any) -> None:
    cluster = fresh_kubesim_cluster
    assert len(kubectl(cluster, "get", "nodes", "--no-headers").stdout.splitlines()) == 2
    kubectl(cluster, "run", "live", "--image", "app:v1")
    assert (
        "condition met"
        in kubectl(cluster, "wait", "--for=condition=Ready", "pod/live", "--timeout=30s").stdout
    )
    row = kubectl(cluster, "get", "pod", "live", "--no-headers").stdout.split()
    assert row[1:3] == ["1/1", "Running"]
    assert 'pod "live" deleted' in kubectl(cluster, "delete", "pod", "live", "--timeout=30s").stdout
    assert kubectl(cluster, "get", "pod", "live", check=False).returncode != 0


def test_kubectl_create_sends_protobuf_that_the_server_reads(kubesim_cluster: Any, ns: str) -> None:
    kubectl(kubesim_cluster, "create", "configmap", "settings", "-n", ns, "--from-literal=mode=fast")
    kubectl(kubesim_cluster, "create", "secret", "generic", "token", "-n", ns, "--from-literal=key=s3cret")
    kubectl(kubesim_cluster, "create", "deployment", "web", "-n", ns, "--image=nginx:1.27", "--replicas=0")
    kubectl(kubesim_cluster, "create", "role", "reader", "-n", ns, "--verb=get", "--resource=pods")
    assert get_json(kubesim_cluster, "cm", "settings", "-n", ns)["data"] == {"mode": "fast"}
    assert get_json(kubesim_cluster, "secret", "token", "-n", ns)["data"] == {"key": "czNjcmV0"}
    deployment = get_json(kubesim_cluster, "deployment", "web", "-n", ns)
    assert deployment["spec"]["replicas"] == 0
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    rule = get_json(kubesim_cluster, "role", "reader", "-n", ns)["rules"][0]
    assert rule == {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}


def test_a_network_policy_applies_with_validation_and_reads_back(kubesim_cluster: Any, ns: str) -> None:
    # manifests/ ships NetworkPolicies: kubectl validates them against the served schema before it
    # sends them, as against a real API server (kubesim stores them and enforces nothing).
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-instances", "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": 8090}]}],
        },
    }
    out = kubectl(kubesim_cluster, "apply", "--validate=strict", "-f", "-", input=dump(policy)).stdout
    assert "networkpolicy.networking.k8s.io/only-instances created" in out
    stored = json.loads(
        kubectl(kubesim_cluster, "get", "netpol", "only-instances", "-n", ns, "-o", "json").stdout
    )
    assert stored["spec"]["ingress"][0]["ports"][0]["port"] == 8090
