"""OpenAPI documents of kubesim: their shape as kubectl reads them, and kubectl explain / apply against them."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from tests.kubesim.conftest import wait_until

from kubesim import builtin_schemas, openapi
from kubesim.patch import merge_lists
from kubesim.resources import ResourceRegistry
from kubesim.testing import AnyCluster, kubectl

KUBESIM_OPTIONS = {"kubelet": False}

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.kubesim.dev"},
    "spec": {
        "group": "example.kubesim.dev",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "A gadget made of parts.",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What the gadget should be.",
                                "properties": {
                                    "replicas": {"type": "integer", "description": "How many gadgets."},
                                    "colour": {"type": "string", "nullable": True, "description": "Paint."},
                                    "parts": {
                                        "type": "array",
                                        "description": "Parts of the gadget.",
                                        "items": {
                                            "type": "object",
                                            "properties": {"name": {"type": "string"}},
                                        },
                                    },
                                },
                            },
                            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def registry() -> ResourceRegistry:
    served = ResourceRegistry()
    served.add_crd(copy.deepcopy(GADGET_CRD))
    return served


def refs(document: Any, prefix: str) -> set[str]:
    return set(re.findall(re.escape(prefix) + r'([^"]+)"', json.dumps(document)))


def gvks(schema: dict[str, Any]) -> list[dict[str, str]]:
    return list(schema.get("x-kubernetes-group-version-kind") or [])


# --- the v3 index --------------------------------------------------------------------------------------


def test_index_names_every_group_version_with_a_hashed_url(registry: ResourceRegistry) -> None:
    paths = openapi.openapi_v3_index(registry)["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/apiextensions.k8s.io/v1", "apis/example.kubesim.dev/v1"} <= set(
        paths
    )
    url = paths["apis/example.kubesim.dev/v1"]["serverRelativeURL"]
    assert re.fullmatch(r"/openapi/v3/apis/example\.kubesim\.dev/v1\?hash=[0-9A-F]{128}", url)


def test_index_hash_changes_when_a_crd_schema_changes(registry: ResourceRegistry) -> None:
    before = openapi.openapi_v3_index(registry)["paths"]
    changed = copy.deepcopy(GADGET_CRD)
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "size"
    ] = {"type": "string"}
    registry.add_crd(changed)
    after = openapi.openapi_v3_index(registry)["paths"]
    assert before["apis/example.kubesim.dev/v1"] != after["apis/example.kubesim.dev/v1"]
    assert before["api/v1"] == after["api/v1"]


def test_index_accepts_a_plain_list_of_types(registry: ResourceRegistry) -> None:
    assert openapi.openapi_v3_index(registry.all()) == openapi.openapi_v3_index(registry)


# --- group-version documents ---------------------------------------------------------------------------


def test_unserved_group_version_has_no_document(registry: ResourceRegistry) -> None:
    assert openapi.openapi_v3_group_version("nothing.example", "v1", registry) is None


def test_custom_kind_is_published_under_its_reversed_group_with_object_meta(
    registry: ResourceRegistry,
) -> None:
    document = openapi.openapi_v3_group_version("example.kubesim.dev", "v1", registry)
    assert document is not None and document["openapi"].startswith("3.")
    schemas = document["components"]["schemas"]
    gadget = schemas["dev.kubesim.example.v1.Gadget"]
    assert gvks(gadget) == [{"group": "example.kubesim.dev", "version": "v1", "kind": "Gadget"}]
    assert gadget["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert gadget["properties"]["spec"]["properties"]["replicas"]["description"] == "How many gadgets."
    assert gvks(schemas["dev.kubesim.example.v1.GadgetList"])[0]["kind"] == "GadgetList"


def test_every_reference_of_a_document_resolves(registry: ResourceRegistry) -> None:
    for group, version in [
        ("", "v1"),
        ("apps", "v1"),
        ("apiextensions.k8s.io", "v1"),
        ("example.kubesim.dev", "v1"),
    ]:
        document = openapi.openapi_v3_group_version(group, version, registry)
        assert document is not None
        missing = refs(document, "#/components/schemas/") - set(document["components"]["schemas"])
        assert not missing, (group, version, missing)


def patch_operation(document: dict[str, Any], path: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path]["patch"]
    return operation


def test_patch_of_a_custom_kind_offers_no_strategic_merge(registry: ResourceRegistry) -> None:
    document = openapi.openapi_v3_group_version("example.kubesim.dev", "v1", registry)
    assert document is not None
    operation = patch_operation(
        document, "/apis/example.kubesim.dev/v1/namespaces/{namespace}/gadgets/{name}"
    )
    assert operation["x-kubernetes-group-version-kind"] == {
        "group": "example.kubesim.dev",
        "version": "v1",
        "kind": "Gadget",
    }
    assert set(operation["requestBody"]["content"]) == {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    }


def test_patch_declares_field_validation_so_kubectl_validates_on_the_server(
    registry: ResourceRegistry,
) -> None:
    document = openapi.openapi_v3_group_version("", "v1", registry)
    assert document is not None
    operation = patch_operation(document, "/api/v1/namespaces/{namespace}/pods/{name}")
    assert "application/strategic-merge-patch+json" in operation["requestBody"]["content"]
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= query


def test_subresources_have_their_paths(registry: ResourceRegistry) -> None:
    document = openapi.openapi_v3_group_version("example.kubesim.dev", "v1", registry)
    assert document is not None
    base = "/apis/example.kubesim.dev/v1/namespaces/{namespace}/gadgets/{name}"
    assert {"get", "put", "patch"} <= set(document["paths"][f"{base}/status"])
    scale = patch_operation(document, f"{base}/scale")
    assert scale["x-kubernetes-group-version-kind"]["kind"] == "Scale"
    assert "io.k8s.api.autoscaling.v1.Scale" in document["components"]["schemas"]


def test_cluster_scoped_kinds_have_no_namespace_in_their_paths(registry: ResourceRegistry) -> None:
    document = openapi.openapi_v3_group_version("", "v1", registry)
    assert document is not None
    assert "/api/v1/nodes/{name}" in document["paths"]
    assert "/api/v1/namespaces/{namespace}/nodes/{name}" not in document["paths"]


# --- built-in schemas ----------------------------------------------------------------------------------


def test_built_in_kinds_have_full_schemas_with_descriptions() -> None:
    definitions = builtin_schemas.definitions()
    pod = definitions["io.k8s.api.core.v1.Pod"]
    assert gvks(pod) == [{"group": "", "version": "v1", "kind": "Pod"}]
    container = definitions["io.k8s.api.core.v1.Container"]
    assert "name" in container["required"]
    assert container["properties"]["imagePullPolicy"]["type"] == "string"
    assert "Always" in container["properties"]["imagePullPolicy"]["description"]


def test_merge_lists_are_marked_as_the_server_merges_them() -> None:
    definitions = builtin_schemas.definitions()
    containers = definitions["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    ports = definitions["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == merge_lists("Pod")[("spec", "containers", "ports")].key
    tolerations = definitions["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"]
    assert "x-kubernetes-patch-strategy" not in tolerations
    finalizers = definitions["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"]
    assert finalizers["x-kubernetes-patch-strategy"] == "merge"


def schemas_within(schema: Any, path: str) -> list[tuple[str, Any]]:
    """Every nested schema of a schema (property values, items, additionalProperties), with its path."""
    found: list[tuple[str, Any]] = []
    if not isinstance(schema, dict):
        return found
    for name, child in (schema.get("properties") or {}).items():
        found += [(f"{path}.{name}", child), *schemas_within(child, f"{path}.{name}")]
    for keyword in ("items", "additionalProperties"):
        child = schema.get(keyword)
        if isinstance(child, dict):
            found += [(f"{path}[{keyword}]", child), *schemas_within(child, f"{path}[{keyword}]")]
    return found


def test_no_schema_is_empty_because_kubectl_explain_cannot_render_one() -> None:
    for name, definition in builtin_schemas.definitions().items():
        empty = [path for path, schema in schemas_within(definition, name) if schema == {}]
        assert not empty, empty


def test_int_or_string_fields_are_marked() -> None:
    port = builtin_schemas.definitions()["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert port["x-kubernetes-int-or-string"] is True


def test_unknown_fields_of_built_in_kinds_are_found() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any": "label"}},
        "spec": {"containers": [{"name": "a", "image": "b", "imagee": "c"}], "nodeSelector": {"x": "y"}},
    }
    assert builtin_schemas.unknown_fields("", "v1", "Pod", pod) == ["spec.containers[0].imagee"]
    assert builtin_schemas.unknown_fields("unknown.group", "v1", "Thing", pod) == []


def test_unknown_fields_of_built_in_kinds_can_be_dropped() -> None:
    service = {"kind": "Service", "spec": {"ports": [{"port": 80, "prot": "TCP"}], "selector": {"app": "x"}}}
    assert builtin_schemas.prune_unknown_fields("", "v1", "Service", service) == ["spec.ports[0].prot"]
    assert service["spec"] == {"ports": [{"port": 80}], "selector": {"app": "x"}}


# --- Swagger 2.0 ----------------------------------------------------------------------------------------


def test_v2_document_is_swagger_with_resolvable_definitions(registry: ResourceRegistry) -> None:
    document = openapi.openapi_v2(registry)
    assert document["swagger"] == "2.0"
    assert not refs(document, "#/definitions/") - set(document["definitions"])
    assert "#/components/" not in json.dumps(document)
    gadget = document["definitions"]["dev.kubesim.example.v1.Gadget"]
    assert "nullable" not in gadget["properties"]["spec"]["properties"]["colour"]


def test_v2_patch_operations_declare_what_they_consume(registry: ResourceRegistry) -> None:
    document = openapi.openapi_v2(registry)
    pod_patch = document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in pod_patch["consumes"]
    assert pod_patch["parameters"][0]["in"] == "body"
    gadget_patch = document["paths"]["/apis/example.kubesim.dev/v1/namespaces/{namespace}/gadgets/{name}"][
        "patch"
    ]
    assert "application/strategic-merge-patch+json" not in gadget_patch["consumes"]


# --- the real kubectl ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gadget_cluster(kubesim_cluster: AnyCluster) -> AnyCluster:
    kubectl(kubesim_cluster, "apply", "-f", "-", input=json.dumps(GADGET_CRD))
    kubectl(
        kubesim_cluster,
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.kubesim.dev",
        "--timeout=30s",
    )
    # A real API server publishes the kind's discovery and OpenAPI a moment after it is established.
    wait_until(
        lambda: kubectl(kubesim_cluster, "explain", "gadgets", check=False).returncode == 0,
        timeout=60,
        what="gadgets in discovery and OpenAPI",
    )
    return kubesim_cluster


@pytest.mark.kubectl
def test_kubectl_explains_a_custom_kind_field_by_field(gadget_cluster: AnyCluster) -> None:
    output = kubectl(gadget_cluster, "explain", "gadgets.spec").stdout
    assert "KIND:       Gadget" in output
    assert "What the gadget should be." in output
    assert re.search(r"replicas\s+<integer>", output)
    assert re.search(r"parts\s+<\[\]Object>", output)


@pytest.mark.kubectl
def test_kubectl_explains_built_in_kinds(gadget_cluster: AnyCluster) -> None:
    output = kubectl(gadget_cluster, "explain", "pods.spec.containers").stdout
    assert "FIELD: containers <[]Container>" in output
    assert re.search(r"image\s+<string>", output)


@pytest.mark.kubectl
def test_kubectl_explains_the_recursive_schema_of_crds(gadget_cluster: AnyCluster) -> None:
    output = kubectl(gadget_cluster, "explain", "crd.spec.versions.schema.openAPIV3Schema").stdout
    assert "FIELD: openAPIV3Schema <JSONSchemaProps>" in output
    assert re.search(r"x-kubernetes-validations\s+<\[\]ValidationRule>", output)


@pytest.mark.kubectl
def test_kubectl_apply_rejects_unknown_fields_on_the_server(gadget_cluster: AnyCluster) -> None:
    gadget = {
        "apiVersion": "example.kubesim.dev/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1", "namespace": "default"},
        "spec": {"replicas": 1, "colur": "red"},
    }
    result = kubectl(gadget_cluster, "apply", "-f", "-", input=json.dumps(gadget), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.colur"' in result.stderr


@pytest.mark.kubectl
def test_kubectl_apply_removes_a_dropped_service_port_by_strategic_merge(gadget_cluster: AnyCluster) -> None:
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "openapi-web", "namespace": "default"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
        },
    }
    kubectl(gadget_cluster, "apply", "-f", "-", input=json.dumps(service))
    service["spec"]["ports"] = service["spec"]["ports"][:1]
    result = kubectl(gadget_cluster, "apply", "-f", "-", input=json.dumps(service))
    assert "warning" not in result.stderr.lower()
    ports = kubectl(
        gadget_cluster, "get", "service", "openapi-web", "-o", "jsonpath={.spec.ports[*].port}"
    ).stdout
    assert ports == "80"
