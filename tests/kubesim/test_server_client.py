"""The kubesim API server through the official Python client: object semantics, lists, watches, errors."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from tests.kubesim.conftest import GROUP, WIDGET_CRD, config_map, pod, wait_until, widget

from kubesim.testing import require_kubesim

KUBESIM_OPTIONS = {"kubelet": False, "bookmark_interval": 0.2}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
# The ConfigMap that the root-CA publisher puts into every namespace.
ROOT_CA = "kube-root-ca.crt"


def http(
    cluster: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """A raw request, for what the generated client cannot say (Accept types, apply patches)."""
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(cluster.url + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=cluster.ssl_context) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        if error.headers.get_content_type() == "text/plain":
            return error.code, dict(error.headers), raw.decode()
        return error.code, dict(error.headers), json.loads(raw) if raw else None


def wait_for_namespace_setup(core: client.CoreV1Api, name: str) -> None:
    """Wait for what the controllers put into a new namespace: the `default` ServiceAccount (a pod
    is refused without it) and the `kube-root-ca.crt` ConfigMap. kubesim makes both with the
    namespace; a real control plane a moment later."""

    def ready() -> bool:
        accounts = [a.metadata.name for a in core.list_namespaced_service_account(name).items]
        maps = [c.metadata.name for c in core.list_namespaced_config_map(name).items]
        return "default" in accounts and ROOT_CA in maps

    wait_until(ready, what=f"namespace {name} set up")


def status_of(error: ApiException) -> dict[str, Any]:
    return dict(json.loads(error.body))


@pytest.fixture
def core(k8s_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_client)


@pytest.fixture
def custom(k8s_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for_namespace_setup(core, name)
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture(scope="module")
def widgets(kubesim_cluster: Any) -> str:
    api_client = kubesim_cluster.api_client()
    try:
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(WIDGET_CRD)
    finally:
        api_client.close()
    wait_until(
        lambda: http(kubesim_cluster, "GET", f"/apis/{GROUP}/v1/widgets")[0] == 200, what="widgets served"
    )
    return "widgets"


# ---------------------------------------------------------------------------------------------------------
# Basic object semantics


def test_created_object_gets_uid_timestamp_and_resource_version(
    core: client.CoreV1Api, namespace: str
) -> None:
    created = core.create_namespaced_config_map(namespace, config_map("a", namespace))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert int(created.metadata.resource_version) > 0
    assert core.read_namespaced_config_map("a", namespace).metadata.uid == created.metadata.uid


def test_resource_versions_grow_across_all_kinds(core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, config_map("rv1", namespace))
    second = core.create_namespaced_secret(namespace, {"metadata": {"name": "rv2"}, "stringData": {"k": "v"}})
    third = core.patch_namespaced_config_map("rv1", namespace, {"data": {"x": "y"}})
    versions = [int(o.metadata.resource_version) for o in (first, second, third)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_generate_name_gives_a_unique_suffix(core: client.CoreV1Api, namespace: str) -> None:
    names = {
        core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}}).metadata.name
        for _ in range(5)
    }
    assert len(names) == 5
    assert all(n.startswith("gen-") and len(n) == len("gen-") + 5 for n in names)


def test_creating_an_existing_name_is_409_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, config_map("dup", namespace))
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, config_map("dup", namespace))
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "AlreadyExists"


def test_missing_object_is_404_with_a_status_body(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("nope", namespace)
    status = status_of(caught.value)
    assert caught.value.status == 404
    assert status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == 'configmaps "nope" not found'
    assert status["details"] == {"name": "nope", "kind": "configmaps"}


def test_invalid_name_is_422_naming_the_field(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, config_map("Not_Valid", namespace))
    status = status_of(caught.value)
    assert caught.value.status == 422
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_creating_in_a_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("no-such-ns", config_map("a", "no-such-ns"))
    assert caught.value.status == 404
    assert "namespaces" in status_of(caught.value)["message"]


def test_default_namespaces_exist(core: client.CoreV1Api) -> None:
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_stale_update_is_409_conflict(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, config_map("c", namespace))
    core.patch_namespaced_config_map("c", namespace, {"data": {"a": "1"}})
    created.data = {"a": "2"}
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("c", namespace, created)
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"


def test_update_with_current_resource_version_succeeds(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, config_map("u", namespace))
    created.data = {"a": "1"}
    replaced = core.replace_namespaced_config_map("u", namespace, created)
    assert replaced.data == {"a": "1"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)


def test_noop_update_keeps_the_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, config_map("same", namespace))
    again = core.patch_namespaced_config_map("same", namespace, {"metadata": {"labels": None}})
    assert again.metadata.resource_version == created.metadata.resource_version


def test_secret_string_data_is_folded_into_base64_data(core: client.CoreV1Api, namespace: str) -> None:
    secret = core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert secret.data == {"k": "dg=="}
    assert secret.type == "Opaque"


def test_pods_get_defaults_and_pending_status(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_pod(namespace, pod("p", namespace, image="app:v1"))
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert created.spec.service_account_name == "default"


def test_a_pod_needs_its_service_account(core: client.CoreV1Api, namespace: str) -> None:
    body = pod("robot", namespace)
    body["spec"]["serviceAccountName"] = "robot"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(namespace, body)
    assert caught.value.status == 403
    assert status_of(caught.value)["message"] == (
        f'pods "robot" is forbidden: error looking up service account {namespace}/robot: '
        'serviceaccount "robot" not found'
    )
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    assert core.create_namespaced_pod(namespace, body).spec.service_account_name == "robot"


def test_pod_binding_sets_the_node_once(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("bound", namespace))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"name": "n1"}}
    core.create_namespaced_pod_binding("bound", namespace, binding, _preload_content=False)
    assert core.read_namespaced_pod("bound", namespace).spec.node_name == "n1"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod_binding("bound", namespace, binding, _preload_content=False)
    assert caught.value.status == 409


def test_dry_run_create_stores_nothing(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, config_map("dry", namespace), dry_run="All")
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("dry", namespace)
    assert caught.value.status == 404


def test_unknown_resource_is_404_and_wrong_method_405(kubesim_cluster: Any) -> None:
    assert http(kubesim_cluster, "GET", "/api/v1/namespaces/default/gizmos")[0] == 404
    status, _, body = http(kubesim_cluster, "PUT", "/api/v1/namespaces/default/configmaps", body={})
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    assert http(kubesim_cluster, "POST", "/api/v1/namespaces/default/pods/x/status", body={})[0] == 405
    assert http(kubesim_cluster, "GET", "/api/v1/namespaces/default/configmaps/x/status")[0] == 404


def test_malformed_body_is_400(kubesim_cluster: Any) -> None:
    status, _, body = http(kubesim_cluster, "POST", "/api/v1/namespaces/default/configmaps", body="{not json")
    assert status == 400 and body["reason"] == "BadRequest"


# ---------------------------------------------------------------------------------------------------------
# Custom resources: generation, status and scale subresources, validation


def test_crd_is_established_and_served_at_once(kubesim_cluster: Any, widgets: str) -> None:
    api_client = kubesim_cluster.api_client()
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
        WIDGET_CRD["metadata"]["name"]
    )
    api_client.close()
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    _, _, discovery = http(kubesim_cluster, "GET", f"/apis/{GROUP}/v1")
    names = {r["name"] for r in discovery["resources"]}
    assert {"widgets", "widgets/status", "widgets/scale"} <= names
    _, _, groups = http(kubesim_cluster, "GET", "/apis")
    assert GROUP in {g["name"] for g in groups["groups"]}


def test_generation_starts_at_one_and_moves_with_spec_only(
    custom: client.CustomObjectsApi, widgets: str, namespace: str
) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", namespace, widgets, widget("g", 1, namespace)
    )
    assert created["metadata"]["generation"] == 1
    labelled = custom.patch_namespaced_custom_object(
        GROUP, "v1", namespace, widgets, "g", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    with_status = custom.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, widgets, "g", {"status": {"replicas": 1}}
    )
    assert with_status["metadata"]["generation"] == 1
    scaled = custom.patch_namespaced_custom_object(
        GROUP, "v1", namespace, widgets, "g", {"spec": {"replicas": 3}}
    )
    assert scaled["metadata"]["generation"] == 2


def test_status_subresource_separates_status_from_spec(
    custom: client.CustomObjectsApi, widgets: str, namespace: str
) -> None:
    body = widget("s", 1, namespace)
    body["status"] = {"replicas": 9}
    created = custom.create_namespaced_custom_object(GROUP, "v1", namespace, widgets, body)
    assert "status" not in created  # create cannot set status
    main = custom.patch_namespaced_custom_object(
        GROUP, "v1", namespace, widgets, "s", {"spec": {"replicas": 2}, "status": {"replicas": 5}}
    )
    assert main["spec"]["replicas"] == 2 and "status" not in main
    status = custom.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, widgets, "s", {"spec": {"replicas": 7}, "status": {"replicas": 5}}
    )
    assert status["status"] == {"replicas": 5} and status["spec"]["replicas"] == 2


def test_custom_resource_put_requires_a_resource_version(
    custom: client.CustomObjectsApi, widgets: str, namespace: str
) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", namespace, widgets, widget("rv", 1, namespace))
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(
            GROUP, "v1", namespace, widgets, "rv", widget("rv", 2, namespace)
        )
    assert caught.value.status == 422


def test_schema_defaults_and_validation_apply(
    custom: client.CustomObjectsApi, widgets: str, namespace: str
) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", namespace, widgets, widget("d", 1, namespace)
    )
    assert created["spec"]["color"] == "blue"
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GROUP, "v1", namespace, widgets, widget("neg", -1, namespace))
    assert caught.value.status == 422
    assert "spec.replicas" in status_of(caught.value)["message"]
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GROUP, "v1", namespace, widgets, widget("big", 101, namespace))
    assert caught.value.status == 422
    assert "at most 100 replicas" in status_of(caught.value)["message"]


def test_crd_rule_field_path_outside_its_schema_is_refused(kubesim_cluster: Any) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("widget", "sprocket").replace("Widget", "Sprocket"))
    del crd["spec"]["names"]["shortNames"]
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root["properties"]["metadata"] = {"type": "object"}
    root["x-kubernetes-validations"] = [
        {"rule": "self.metadata.name.size() < 20", "fieldPath": ".metadata.name", "message": "short names"}
    ]
    status, _, answer = http(
        kubesim_cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert status == 422, answer
    assert answer["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "sprockets.test.kubesim.dev" is invalid: '
        "spec.validation.openAPIV3Schema.x-kubernetes-validations[0].fieldPath: "
        'Invalid value: ".metadata.name": must be a valid path'
    )


def test_unknown_fields_are_pruned_or_refused_when_strict(
    kubesim_cluster: Any, widgets: str, namespace: str
) -> None:
    body = widget("prune", 1, namespace)
    body["spec"]["bogus"] = True
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets"
    status, headers, created = http(kubesim_cluster, "POST", path, body)
    assert status == 201 and "bogus" not in created["spec"]
    assert "unknown field" in headers.get("Warning", "")
    body["metadata"]["name"] = "strict"
    status, _, error = http(kubesim_cluster, "POST", path + "?fieldValidation=Strict", body)
    assert status == 400 and 'unknown field "spec.bogus"' in error["message"]


def test_scale_subresource_reads_and_writes_replicas(
    custom: client.CustomObjectsApi, widgets: str, namespace: str
) -> None:
    custom.create_namespaced_custom_object(GROUP, "v1", namespace, widgets, widget("sc", 2, namespace))
    custom.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, widgets, "sc", {"status": {"replicas": 1, "selector": "app=sc"}}
    )
    scale = custom.get_namespaced_custom_object_scale(GROUP, "v1", namespace, widgets, "sc")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 1, "selector": "app=sc"}
    custom.patch_namespaced_custom_object_scale(
        GROUP, "v1", namespace, widgets, "sc", {"spec": {"replicas": 6}}
    )
    obj = custom.get_namespaced_custom_object(GROUP, "v1", namespace, widgets, "sc")
    assert obj["spec"]["replicas"] == 6 and obj["metadata"]["generation"] == 2


def test_server_side_apply_creates_then_conflicts_without_force(
    kubesim_cluster: Any, widgets: str, namespace: str
) -> None:
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets/ssa"
    apply = {"Content-Type": "application/apply-patch+yaml"}
    status, _, created = http(
        kubesim_cluster, "PATCH", path + "?fieldManager=alice", widget("ssa", 1, namespace), apply
    )
    assert status == 201 and created["spec"]["replicas"] == 1
    assert [m["manager"] for m in created["metadata"]["managedFields"]] == ["alice"]
    status, _, error = http(
        kubesim_cluster, "PATCH", path + "?fieldManager=bob", widget("ssa", 2, namespace), apply
    )
    assert status == 409 and error["reason"] == "Conflict"
    status, _, forced = http(
        kubesim_cluster, "PATCH", path + "?fieldManager=bob&force=true", widget("ssa", 2, namespace), apply
    )
    assert status == 200 and forced["spec"]["replicas"] == 2


def test_strategic_merge_patch_is_refused_for_custom_resources(
    kubesim_cluster: Any, widgets: str, namespace: str
) -> None:
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets/smp"
    http(
        kubesim_cluster,
        "POST",
        f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets",
        widget("smp", 1, namespace),
    )
    status, _, _ = http(
        kubesim_cluster,
        "PATCH",
        path,
        {"spec": {"replicas": 2}},
        {"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert status == 415


# ---------------------------------------------------------------------------------------------------------
# Finalizers, deletion and garbage collection


def test_finalizers_hold_a_deleted_object_until_removed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, config_map("fin", namespace, finalizers=["test/hold"]))
    core.delete_namespaced_config_map("fin", namespace)
    held = core.read_namespaced_config_map("fin", namespace)
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map(
            "fin", namespace, {"metadata": {"finalizers": ["test/hold", "test/new"]}}
        )
    assert caught.value.status == 422
    core.patch_namespaced_config_map("fin", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("fin", namespace)
    assert caught.value.status == 404


def test_claim_in_use_outlives_its_deletion_until_the_pod_goes(
    core: client.CoreV1Api, namespace: str
) -> None:
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    created = core.create_namespaced_persistent_volume_claim(namespace, claim)
    assert created.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    user = pod("user", namespace)
    user["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    core.create_namespaced_pod(namespace, user)
    # Only a scheduled pod holds its claim (a kubelet starts no pod whose claim is being deleted).
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "user"}, "target": {"name": "n1"}}
    core.create_namespaced_pod_binding("user", namespace, binding, _preload_content=False)
    core.delete_namespaced_persistent_volume_claim("data", namespace)
    time.sleep(1.0)  # time enough for a controller that would wrongly let it go
    assert core.read_namespaced_persistent_volume_claim("data", namespace).metadata.deletion_timestamp
    # No kubelet runs node n1 to confirm a graceful deletion: the pod goes at once.
    core.delete_namespaced_pod("user", namespace, grace_period_seconds=0)
    wait_until(
        lambda: not core.list_namespaced_persistent_volume_claim(namespace).items,
        what="claim released and gone",
    )


def test_claim_of_an_unscheduled_pod_goes_with_its_deletion(core: client.CoreV1Api, namespace: str) -> None:
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    waiting = pod("waiting", namespace)
    waiting["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    core.create_namespaced_pod(namespace, waiting)
    core.delete_namespaced_persistent_volume_claim("data", namespace)
    wait_until(
        lambda: not core.list_namespaced_persistent_volume_claim(namespace).items,
        what="claim of a pod that never ran gone",
    )


def test_delete_preconditions_are_checked(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, config_map("pre", namespace))
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_config_map("pre", namespace, body=options)
    assert caught.value.status == 409


def _owned_config_map(name: str, namespace: str, owner: Any, **extra: Any) -> dict[str, Any]:
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        **extra,
    }
    return config_map(name, namespace, ownerReferences=[ref])


def test_background_deletion_collects_dependents(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, config_map("owner", namespace))
    core.create_namespaced_config_map(namespace, _owned_config_map("dep1", namespace, owner))
    core.create_namespaced_config_map(namespace, _owned_config_map("dep2", namespace, owner))
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait_until(
        lambda: (
            not {"dep1", "dep2"} & {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
        ),
        what="dependents collected",
    )


def test_orphan_deletion_keeps_dependents_without_the_reference(
    core: client.CoreV1Api, namespace: str
) -> None:
    owner = core.create_namespaced_config_map(namespace, config_map("o-owner", namespace))
    core.create_namespaced_config_map(namespace, _owned_config_map("o-dep", namespace, owner))
    core.delete_namespaced_config_map("o-owner", namespace, propagation_policy="Orphan")
    wait_until(lambda: not _exists(core, "o-owner", namespace), what="owner gone")
    assert not core.read_namespaced_config_map("o-dep", namespace).metadata.owner_references


def test_foreground_deletion_removes_dependents_before_the_owner(
    core: client.CoreV1Api, namespace: str
) -> None:
    owner = core.create_namespaced_config_map(namespace, config_map("f-owner", namespace))
    core.create_namespaced_config_map(
        namespace, _owned_config_map("f-dep", namespace, owner, blockOwnerDeletion=True)
    )
    for name, blocking in (("f-dep-hold", True), ("f-dep-loose", False)):
        core.create_namespaced_config_map(namespace, config_map(name, namespace, finalizers=["test/hold"]))
        reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "f-owner", "uid": owner.metadata.uid}
        core.patch_namespaced_config_map(
            name,
            namespace,
            {"metadata": {"ownerReferences": [{**reference, "blockOwnerDeletion": blocking}]}},
        )
    core.delete_namespaced_config_map("f-owner", namespace, propagation_policy="Foreground")
    wait_until(lambda: not _exists(core, "f-dep", namespace), what="dependent deleted")
    wait_until(
        lambda: core.read_namespaced_config_map("f-dep-loose", namespace).metadata.deletion_timestamp,
        what="a dependent that does not block deleted too",
    )
    time.sleep(1.0)  # time enough for a collector that would wrongly let the owner go
    waiting = core.read_namespaced_config_map("f-owner", namespace)
    assert "foregroundDeletion" in waiting.metadata.finalizers
    # Only a dependent that sets blockOwnerDeletion holds the owner.
    core.patch_namespaced_config_map("f-dep-hold", namespace, {"metadata": {"finalizers": None}})
    wait_until(lambda: not _exists(core, "f-owner", namespace), what="owner deleted after its dependents")
    assert core.read_namespaced_config_map("f-dep-loose", namespace).metadata.deletion_timestamp
    core.patch_namespaced_config_map("f-dep-loose", namespace, {"metadata": {"finalizers": None}})


def test_dependent_of_a_missing_owner_is_collected(core: client.CoreV1Api, namespace: str) -> None:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": str(uuid.uuid4())}
    core.create_namespaced_config_map(namespace, config_map("orphaned", namespace, ownerReferences=[ref]))
    wait_until(lambda: not _exists(core, "orphaned", namespace), what="orphan collected")


def test_deleting_a_namespace_deletes_its_contents(core: client.CoreV1Api) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, config_map("x", name))
    core.delete_namespace(name)
    wait_until(
        lambda: name not in {n.metadata.name for n in core.list_namespace().items}, what="namespace gone"
    )
    assert not core.list_namespaced_config_map(name).items


def test_custom_objects_go_with_their_crd(kubesim_cluster: Any) -> None:
    cluster = kubesim_cluster
    crd = json.loads(
        json.dumps(WIDGET_CRD).replace("widget", "gadget").replace("Widget", "Gadget").replace('"wd"', '"gd"')
    )
    api_client = cluster.api_client()
    ext = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    ext.create_custom_resource_definition(crd)
    # A real API server serves a new kind a moment after the CRD is established.
    wait_until(lambda: http(cluster, "GET", f"/apis/{GROUP}/v1/gadgets")[0] == 200, what="gadgets served")
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1"},
        "spec": {"replicas": 1},
    }
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "gadgets", body)
    ext.delete_custom_resource_definition(crd["metadata"]["name"])
    wait_until(lambda: http(cluster, "GET", f"/apis/{GROUP}/v1/gadgets")[0] == 404, what="gadgets unserved")
    api_client.close()


def test_a_group_nobody_serves_is_a_plain_404(kubesim_cluster: Any) -> None:
    for path in ("/apis/nothing.example.com/v1/things", "/apis/nothing.example.com", "/nothing"):
        status, headers, body = http(kubesim_cluster, "GET", path)
        assert (status, headers["Content-Type"], body) == (
            404,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        )
    # A served group (or the core API) answers a Status for what it does not have.
    for path in ("/api/v1/gizmos", "/api/v2/pods", "/apis/apps/v9/deployments"):
        status, _, body = http(kubesim_cluster, "GET", path)
        assert status == 404 and body["reason"] == "NotFound", path


def _exists(core: client.CoreV1Api, name: str, namespace: str) -> bool:
    try:
        core.read_namespaced_config_map(name, namespace)
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


# ---------------------------------------------------------------------------------------------------------
# Lists: selectors and pagination


def test_label_selectors_equality_and_set_based(core: client.CoreV1Api, namespace: str) -> None:
    for name, labels in {
        "a": {"tier": "web", "env": "prod"},
        "b": {"tier": "web", "env": "dev"},
        "c": {"tier": "db"},
        "d": {},
    }.items():
        core.create_namespaced_config_map(namespace, config_map(name, namespace, labels=labels))

    def names(selector: str) -> list[str]:
        return sorted(
            c.metadata.name for c in core.list_namespaced_config_map(namespace, label_selector=selector).items
        )

    assert names("tier=web") == ["a", "b"]
    assert names("tier==web,env!=prod") == ["b"]
    assert names("env in (prod, dev)") == ["a", "b"]
    assert names("tier notin (web)") == ["c", "d", ROOT_CA]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c", "d", ROOT_CA]
    assert names("tier!=db") == ["a", "b", "d", ROOT_CA]


def test_malformed_label_selector_is_400(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(namespace, label_selector="a in (b")
    assert caught.value.status == 400


def test_field_selectors_on_name_namespace_and_pod_fields(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("p1", namespace))
    core.create_namespaced_pod(namespace, pod("p2", namespace))
    core.create_namespaced_pod_binding(
        "p2", namespace, {"metadata": {"name": "p2"}, "target": {"name": "node-a"}}, _preload_content=False
    )
    by_name = core.list_namespaced_pod(namespace, field_selector="metadata.name=p1").items
    assert [p.metadata.name for p in by_name] == ["p1"]
    on_node = core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName=node-a,metadata.namespace={namespace}"
    )
    assert [p.metadata.name for p in on_node.items] == ["p2"]
    pending = core.list_namespaced_pod(
        namespace, field_selector="status.phase=Pending,metadata.name!=p2"
    ).items
    assert [p.metadata.name for p in pending] == ["p1"]
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(namespace, field_selector="data.x=1")
    assert caught.value.status == 400
    assert (
        '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'
        in (status_of(caught.value)["message"])
    )


def test_event_field_selector_on_involved_object(core: client.CoreV1Api, namespace: str) -> None:
    for target in ("one", "two"):
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"name": f"ev-{target}"},
                "involvedObject": {"kind": "Pod", "name": target, "namespace": namespace},
                "reason": "Test",
                "message": "m",
            },
        )
    found = core.list_namespaced_event(namespace, field_selector="involvedObject.name=two").items
    assert [e.metadata.name for e in found] == ["ev-two"]


def test_events_are_served_by_both_event_apis(
    core: client.CoreV1Api, k8s_client: client.ApiClient, namespace: str
) -> None:
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "both"},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": namespace},
            "reason": "R",
            "action": "Test",
            "message": "hello",
            "eventTime": "2024-01-01T00:00:00.250000Z",
            "reportingComponent": "test",
            "reportingInstance": "test-1",
        },
    )
    new_style = client.EventsV1Api(k8s_client).read_namespaced_event("both", namespace)
    assert new_style.note == "hello" and new_style.regarding.name == "x"
    assert new_style.reporting_controller == "test"


@pytest.mark.parametrize(
    ("path", "body", "stamp", "unparsed"),
    [
        (
            "/api/v1/namespaces/{ns}/events",
            {
                "metadata": {"name": "e"},
                "involvedObject": {"kind": "Pod", "name": "x", "namespace": "{ns}"},
                "eventTime": "",
                "reportingComponent": "test/c",
                "reportingInstance": "test-1",
                "action": "Test",
                "reason": "Test",
            },
            "2024-01-01T00:00:00Z",
            '"Z" as ".000000"',
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/{ns}/events",
            {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "e"},
                "eventTime": "",
                "reportingController": "test/c",
                "reportingInstance": "test-1",
                "action": "Test",
                "reason": "Test",
                "type": "Normal",
                "regarding": {"kind": "Pod", "name": "x", "namespace": "{ns}"},
            },
            "2024-01-01T00:00:00.123Z",
            '".123Z" as ".000000"',
        ),
    ],
)
def test_event_time_needs_microseconds(
    kubesim_cluster: Any, namespace: str, path: str, body: dict[str, Any], stamp: str, unparsed: str
) -> None:
    body = json.loads(json.dumps(body).replace("{ns}", namespace))
    body["eventTime"] = stamp
    status, _, answer = http(kubesim_cluster, "POST", path.format(ns=namespace), body)
    assert status == 400, answer
    assert answer["message"] == (
        f'Event in version "v1" cannot be handled as a Event: parsing time "{stamp}" as '
        f'"2006-01-02T15:04:05.000000Z07:00": cannot parse {unparsed}'
    )
    body["eventTime"] = "2024-01-01T00:00:00.000000Z"
    status, _, answer = http(kubesim_cluster, "POST", path.format(ns=namespace), body)
    assert status == 201, answer
    assert answer["eventTime"] == "2024-01-01T00:00:00.000000Z"


def test_pagination_with_limit_and_continue(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(7):
        core.create_namespaced_config_map(namespace, config_map(f"page-{i}", namespace))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        seen.extend(c.metadata.name for c in page.items)
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert seen == sorted([ROOT_CA, *(f"page-{i}" for i in range(7))])
    assert pages == 3
    first = core.list_namespaced_config_map(namespace, limit=3)
    assert first.metadata.remaining_item_count == 5


def test_cluster_wide_list_spans_namespaces(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, config_map("wide", namespace))
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.name=wide")
    assert [(c.metadata.namespace, c.metadata.name) for c in everywhere.items] == [(namespace, "wide")]


def test_list_resource_version_is_current(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, config_map("lrv", namespace))
    listed = core.list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)


# ---------------------------------------------------------------------------------------------------------
# Watches


def _collect(stream: Any, count: int) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    for event in stream:
        events.append((event["type"], event["object"].metadata.name if event["type"] != "BOOKMARK" else ""))
        if len(events) >= count:
            break
    return events


def test_watch_replays_changes_after_a_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, config_map("w1", namespace))
    core.patch_namespaced_config_map("w1", namespace, {"data": {"a": "b"}})
    core.delete_namespaced_config_map("w1", namespace)
    w = watch.Watch()
    events = _collect(
        w.stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=5), 3
    )
    w.stop()
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_without_resource_version_starts_with_current_objects(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, config_map("existing", namespace))
    w = watch.Watch()
    events = _collect(w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=5), 1)
    w.stop()
    assert events == [("ADDED", "existing")]


def test_watch_sees_live_changes_with_selectors(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def read() -> None:
        stream = w.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=start,
            label_selector="app=x",
            timeout_seconds=5,
        )
        events.extend(_collect(stream, 3))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    core.create_namespaced_config_map(namespace, config_map("other", namespace, labels={"app": "y"}))
    core.create_namespaced_config_map(namespace, config_map("sel", namespace, labels={"app": "x"}))
    core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"app": "z"}}})
    core.patch_namespaced_config_map("other", namespace, {"metadata": {"labels": {"app": "x"}}})
    reader.join(10)
    w.stop()
    # Leaving the selection reads as DELETED, entering it as ADDED, as with the real API server.
    assert events == [("ADDED", "sel"), ("DELETED", "sel"), ("ADDED", "other")]


def test_watch_sends_bookmarks_when_allowed(kubesim_cluster: Any, namespace: str) -> None:
    require_kubesim(
        kubesim_cluster, "bookmarks every 0.2 s (bookmark_interval); a real API server sends one a minute"
    )
    rv = http(kubesim_cluster, "GET", f"/api/v1/namespaces/{namespace}/configmaps")[2]["metadata"][
        "resourceVersion"
    ]
    path = f"/api/v1/namespaces/{namespace}/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}"
    with urllib.request.urlopen(
        kubesim_cluster.url + path, timeout=10, context=kubesim_cluster.ssl_context
    ) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    bookmarks = [e for e in lines if e["type"] == "BOOKMARK"]
    assert bookmarks, lines
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_ends_at_the_server_side_timeout(kubesim_cluster: Any, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=1&resourceVersion=0"
    started = time.monotonic()
    with urllib.request.urlopen(
        kubesim_cluster.url + path, timeout=10, context=kubesim_cluster.ssl_context
    ) as response:
        response.read()
    assert 0.9 <= time.monotonic() - started < 5


def test_send_initial_events_ends_with_an_annotated_bookmark(kubesim_cluster: Any, namespace: str) -> None:
    http(kubesim_cluster, "POST", f"/api/v1/namespaces/{namespace}/configmaps", config_map("init", namespace))
    path = (
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    with urllib.request.urlopen(
        kubesim_cluster.url + path, timeout=10, context=kubesim_cluster.ssl_context
    ) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert sorted((line["type"], line["object"]["metadata"]["name"]) for line in lines[:2]) == [
        ("ADDED", "init"),
        ("ADDED", ROOT_CA),
    ]
    assert lines[2]["type"] == "BOOKMARK"
    assert lines[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


@pytest.mark.kubesim(kubelet=False, event_window=5)
def test_watch_from_an_expired_version_is_410_gone(fresh_kubesim_cluster: Any) -> None:
    cluster = require_kubesim(
        fresh_kubesim_cluster, "an event log of 5 changes (event_window); a real watch cache keeps minutes"
    )
    api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(10):
        core.create_namespaced_config_map("default", config_map(f"churn-{i}", "default"))
    path = f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}"
    with urllib.request.urlopen(cluster.url + path, timeout=10, context=cluster.ssl_context) as response:
        assert response.status == 200
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert [e["type"] for e in lines] == ["ERROR"]
    assert lines[0]["object"]["code"] == 410 and lines[0]["object"]["reason"] == "Expired"
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=2
        ):
            pass
    assert caught.value.status == 410
    api_client.close()


def test_slow_watcher_does_not_hold_up_a_fast_one(kubesim_cluster: Any, namespace: str) -> None:
    cluster = kubesim_cluster
    path = f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion=0&timeoutSeconds=10"
    # The slow watcher connects and then never reads.
    slow = urllib.request.urlopen(cluster.url + path, timeout=10, context=cluster.ssl_context)
    try:
        fast = urllib.request.urlopen(cluster.url + path, timeout=10, context=cluster.ssl_context)
        api_client = cluster.api_client()
        core = client.CoreV1Api(api_client)
        big = {"blob": "x" * 50_000}
        for i in range(60):
            core.create_namespaced_config_map(namespace, {**config_map(f"big-{i}", namespace), "data": big})
        seen = 0
        while seen < 60:
            line = fast.readline()
            assert line, "fast watcher's stream ended early"
            seen += 1
        fast.close()
        api_client.close()
    finally:
        slow.close()


# ---------------------------------------------------------------------------------------------------------
# Tables and discovery


def test_table_for_a_custom_resource_uses_printer_columns(
    kubesim_cluster: Any, widgets: str, namespace: str
) -> None:
    http(
        kubesim_cluster,
        "POST",
        f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets",
        widget("tab", 3, namespace),
    )
    status, headers, table = http(
        kubesim_cluster, "GET", f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets", headers={"Accept": TABLE}
    )
    assert status == 200 and headers["Content-Type"] == "application/json" and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Replicas", "Color", "Ready", "Age"]
    row = next(r for r in table["rows"] if r["cells"][0] == "tab")
    assert row["cells"][1:4] == [3, "blue", None]
    assert row["cells"][4].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_pod_table_has_ready_status_restarts_age(
    kubesim_cluster: Any, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("tp", namespace))
    _, _, table = http(
        kubesim_cluster, "GET", f"/api/v1/namespaces/{namespace}/pods/tp", headers={"Accept": TABLE}
    )
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:4] == ["tp", "0/1", "Pending", "0"]


def test_aggregated_discovery_lists_groups_and_resources(kubesim_cluster: Any, widgets: str) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, headers, body = http(kubesim_cluster, "GET", "/apis", headers={"Accept": accept})
    assert status == 200 and "as=APIGroupDiscoveryList" in headers["Content-Type"]
    groups = {item["metadata"]["name"]: item for item in body["items"]}
    widget_resources = groups[GROUP]["versions"][0]["resources"]
    entry = next(r for r in widget_resources if r["resource"] == "widgets")
    assert entry["scope"] == "Namespaced" and entry["shortNames"] == ["wd"]
    assert {s["subresource"] for s in entry["subresources"]} == {"status", "scale"}
    _, _, core_body = http(kubesim_cluster, "GET", "/api", headers={"Accept": accept})
    assert core_body["items"][0]["metadata"] == {}


def test_version_endpoint_reports_1_32(kubesim_cluster: Any) -> None:
    _, _, version = http(kubesim_cluster, "GET", "/version")
    require_kubesim(kubesim_cluster, "the version kubesim reports; a real cluster reports its own")
    assert (version["major"], version["minor"]) == ("1", "32")


# ---------------------------------------------------------------------------------------------------------
# Fault injection


@pytest.mark.kubesim(kubelet=False)
def test_injected_errors_are_reproducible_for_a_seed(fresh_kubesim_cluster: Any) -> None:
    cluster = require_kubesim(fresh_kubesim_cluster, "injects faults")

    def outcomes() -> list[int]:
        cluster.faults.reset(seed=7)
        cluster.faults.configure(error_rates={"get": 0.5}, codes=(500, 429))
        return [http(cluster, "GET", "/api/v1/namespaces/default")[0] for _ in range(30)]

    first, second = outcomes(), outcomes()
    assert first == second
    assert {200, 500, 429} <= set(first) or {200} < set(first)
    cluster.faults.reset()
    assert all(http(cluster, "GET", "/api/v1/namespaces/default")[0] == 200 for _ in range(10))


@pytest.mark.kubesim(kubelet=False)
def test_injected_429_carries_retry_after_and_409_only_hits_writes(fresh_kubesim_cluster: Any) -> None:
    cluster = require_kubesim(fresh_kubesim_cluster, "injects faults")
    cluster.faults.fail_next("list", 429, resource="configmaps")
    status, headers, body = http(cluster, "GET", "/api/v1/namespaces/default/configmaps")
    assert status == 429 and headers["Retry-After"] == "1" and body["reason"] == "TooManyRequests"
    cluster.faults.configure(error_rates={"*": 1.0}, codes=(409,))
    assert http(cluster, "GET", "/api/v1/namespaces/default/configmaps")[0] == 500
    assert http(cluster, "POST", "/api/v1/namespaces/default/configmaps", config_map("c"))[0] == 409
    cluster.faults.reset()


@pytest.mark.kubesim(kubelet=False)
def test_injected_latency_delays_requests(fresh_kubesim_cluster: Any) -> None:
    cluster = require_kubesim(fresh_kubesim_cluster, "injects faults")
    cluster.faults.configure(latency=0.3)
    started = time.monotonic()
    http(cluster, "GET", "/api/v1/namespaces/default/configmaps")
    assert time.monotonic() - started >= 0.3
    cluster.faults.reset()


@pytest.mark.kubesim(kubelet=False)
def test_forced_watch_disconnects_end_streams(fresh_kubesim_cluster: Any) -> None:
    cluster = require_kubesim(fresh_kubesim_cluster, "injects faults")
    cluster.faults.configure(watch_disconnect_every=0.5)
    path = "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=30"
    started = time.monotonic()
    with urllib.request.urlopen(cluster.url + path, timeout=10, context=cluster.ssl_context) as response:
        response.read()
    assert time.monotonic() - started < 3
    cluster.faults.reset()


# ---------------------------------------------------------------------------------------------------------
# In-process access, built-in field validation, multi-version CRDs


def test_in_process_store_writes_reach_http_watchers(kubesim_cluster: Any, namespace: str) -> None:
    cluster = require_kubesim(kubesim_cluster, "writes through kubesim's in-process store")
    store = cluster.store
    configmaps = store.type("configmaps")
    rv = store.list(configmaps, namespace).resource_version
    store.create(configmaps, namespace, config_map("inproc", namespace))
    path = f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    with urllib.request.urlopen(cluster.url + path, timeout=10, context=cluster.ssl_context) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "inproc")]
    assert (
        store.get(configmaps, namespace, "inproc")["metadata"]["resourceVersion"]
        == lines[0]["object"]["metadata"]["resourceVersion"]
    )


def test_unknown_fields_of_built_in_kinds_are_dropped_or_refused(
    kubesim_cluster: Any, namespace: str
) -> None:
    body = pod("typo", namespace)
    body["spec"]["containers"][0]["imagee"] = "oops"
    path = f"/api/v1/namespaces/{namespace}/pods"
    status, _, error = http(kubesim_cluster, "POST", path + "?fieldValidation=Strict", body)
    assert status == 400 and 'unknown field "spec.containers[0].imagee"' in error["message"]
    status, headers, created = http(kubesim_cluster, "POST", path, body)
    assert status == 201 and "imagee" not in created["spec"]["containers"][0]
    assert "imagee" in headers.get("Warning", "")


def test_multi_version_crd_serves_one_object_at_every_version(kubesim_cluster: Any) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("widget", "sprocket").replace("Widget", "Sprocket"))
    crd["spec"]["names"]["shortNames"] = ["spk"]
    v1 = crd["spec"]["versions"][0]
    v2 = json.loads(json.dumps(v1))
    v2.update(name="v2", storage=False)
    crd["spec"]["versions"] = [v1, v2]
    assert (
        http(kubesim_cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)[0]
        == 201
    )
    base = f"/apis/{GROUP}/v2/namespaces/default/sprockets"
    body = {
        "apiVersion": f"{GROUP}/v2",
        "kind": "Sprocket",
        "metadata": {"name": "s1"},
        "spec": {"replicas": 2},
    }
    status, _, created = wait_until(lambda: (r := http(kubesim_cluster, "POST", base, body))[0] != 404 and r)
    assert status == 201 and created["apiVersion"] == f"{GROUP}/v2"
    _, _, as_v1 = http(kubesim_cluster, "GET", f"/apis/{GROUP}/v1/namespaces/default/sprockets/s1")
    assert as_v1["apiVersion"] == f"{GROUP}/v1" and as_v1["spec"]["replicas"] == 2
    _, _, group = http(kubesim_cluster, "GET", f"/apis/{GROUP}")
    assert group["preferredVersion"]["version"] == "v2"
