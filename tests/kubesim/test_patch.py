"""JSON patch, merge patch, strategic merge patch and server-side apply as the API server does them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesim.errors import ApiError
from kubesim.patch import (
    apply_json_patch,
    apply_merge_patch,
    apply_server_side,
    apply_strategic_merge_patch,
    create_merge_patch,
    record_update,
    supports_strategic_merge,
)


def pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox:1.36"},
            ]
        },
    }
    base["spec"].update(spec)
    return base


# --- JSON patch ---------------------------------------------------------------------------------------


def test_json_patch_replaces_a_field() -> None:
    result = apply_json_patch(
        pod(), [{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.26"}]
    )
    assert result["spec"]["containers"][0]["image"] == "nginx:1.26"


def test_json_patch_does_not_modify_its_input() -> None:
    original = pod()
    apply_json_patch(original, [{"op": "remove", "path": "/metadata/labels"}])
    assert original["metadata"]["labels"] == {"app": "web"}


def test_json_patch_with_unknown_operation_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        apply_json_patch(pod(), [{"op": "frobnicate", "path": "/spec"}])
    assert caught.value.code == 400


def test_json_patch_removing_a_missing_path_is_unprocessable() -> None:
    with pytest.raises(ApiError) as caught:
        apply_json_patch(pod(), [{"op": "remove", "path": "/spec/nodeName"}])
    assert caught.value.code == 422
    assert caught.value.reason == "Invalid"
    assert "nodeName" in caught.value.causes[0].message


def test_json_patch_failed_test_operation_is_unprocessable() -> None:
    with pytest.raises(ApiError) as caught:
        apply_json_patch(pod(), [{"op": "test", "path": "/metadata/name", "value": "other"}])
    assert caught.value.code == 422


def test_json_patch_that_is_not_a_list_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        apply_json_patch(pod(), {"op": "add"})  # type: ignore[arg-type]
    assert caught.value.code == 400


# --- merge patch --------------------------------------------------------------------------------------


def test_merge_patch_null_deletes_and_objects_merge() -> None:
    result = apply_merge_patch(pod(), {"metadata": {"labels": {"app": None, "tier": "front"}}})
    assert result["metadata"]["labels"] == {"tier": "front"}
    assert result["metadata"]["name"] == "web-0"


def test_merge_patch_replaces_lists_whole() -> None:
    result = apply_merge_patch(pod(), {"spec": {"containers": [{"name": "only", "image": "x"}]}})
    assert result["spec"]["containers"] == [{"name": "only", "image": "x"}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=15,
)
json_objects_without_nulls = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=3),
    lambda children: st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=15,
).filter(lambda v: isinstance(v, dict))


@given(json_objects_without_nulls, json_objects_without_nulls)
def test_merge_patch_from_a_diff_turns_original_into_target(original: Any, target: Any) -> None:
    patch = create_merge_patch(original, target)
    assert apply_merge_patch(original, patch) == target


@given(json_objects_without_nulls, st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_merge_patch_is_idempotent(original: Any, patch: Any) -> None:
    once = apply_merge_patch(original, patch)
    assert apply_merge_patch(once, patch) == once


# --- strategic merge patch ----------------------------------------------------------------------------


def test_strategic_merge_merges_containers_by_name() -> None:
    result = apply_strategic_merge_patch(
        pod(), {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}, "Pod"
    )
    containers = result["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0] == {"name": "app", "image": "nginx:1.26", "ports": [{"containerPort": 80}]}


def test_strategic_merge_appends_new_list_items() -> None:
    result = apply_strategic_merge_patch(
        pod(), {"spec": {"containers": [{"name": "log", "image": "fluentd"}]}}, "Pod"
    )
    assert [c["name"] for c in result["spec"]["containers"]] == ["app", "sidecar", "log"]


def test_strategic_merge_merges_container_ports_by_container_port() -> None:
    patch = {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "http"}]}]}}
    result = apply_strategic_merge_patch(pod(), patch, "Pod")
    assert result["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "http"}]


def test_strategic_merge_deletes_an_item_with_patch_delete() -> None:
    patch = {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}
    result = apply_strategic_merge_patch(pod(), patch, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["app"]


def test_strategic_merge_replaces_a_list_with_patch_replace() -> None:
    patch = {"spec": {"containers": [{"name": "new", "image": "x"}, {"$patch": "replace"}]}}
    result = apply_strategic_merge_patch(pod(), patch, "Pod")
    assert result["spec"]["containers"] == [{"name": "new", "image": "x"}]


def test_strategic_merge_replaces_a_map_with_patch_replace() -> None:
    patch = {"metadata": {"labels": {"$patch": "replace", "tier": "front"}}}
    result = apply_strategic_merge_patch(pod(), patch, "Pod")
    assert result["metadata"]["labels"] == {"tier": "front"}


def test_strategic_merge_deletes_a_map_with_patch_delete() -> None:
    result = apply_strategic_merge_patch(pod(), {"metadata": {"labels": {"$patch": "delete"}}}, "Pod")
    assert "labels" not in result["metadata"]


def test_strategic_merge_null_deletes_a_field() -> None:
    result = apply_strategic_merge_patch(pod(nodeName="n1"), {"spec": {"nodeName": None}}, "Pod")
    assert "nodeName" not in result["spec"]


def test_strategic_merge_replaces_tolerations_which_have_no_merge_key() -> None:
    original = pod(tolerations=[{"key": "a", "operator": "Exists"}])
    result = apply_strategic_merge_patch(
        original, {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}, "Pod"
    )
    assert result["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_strategic_merge_replaces_container_statuses_which_are_atomic() -> None:
    original = pod()
    original["status"] = {
        "containerStatuses": [{"name": "app", "ready": True}, {"name": "sidecar", "ready": True}]
    }
    patch = {"status": {"containerStatuses": [{"name": "app", "ready": False}]}}
    result = apply_strategic_merge_patch(original, patch, "Pod")
    assert result["status"]["containerStatuses"] == [{"name": "app", "ready": False}]


def test_strategic_merge_merges_pod_conditions_by_type() -> None:
    original = pod()
    original["status"] = {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]
    }
    result = apply_strategic_merge_patch(
        original, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Pod"
    )
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]


def test_strategic_merge_unions_finalizers_and_deletes_from_primitive_list() -> None:
    original = pod()
    original["metadata"]["finalizers"] = ["a", "b"]
    added = apply_strategic_merge_patch(original, {"metadata": {"finalizers": ["b", "c"]}}, "Pod")
    assert added["metadata"]["finalizers"] == ["a", "b", "c"]
    removed = apply_strategic_merge_patch(
        added, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "Pod"
    )
    assert removed["metadata"]["finalizers"] == ["b", "c"]


def test_strategic_merge_merges_owner_references_by_uid() -> None:
    original = pod()
    original["metadata"]["ownerReferences"] = [{"uid": "1", "name": "a"}]
    result = apply_strategic_merge_patch(
        original, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}, "Pod"
    )
    assert [r["uid"] for r in result["metadata"]["ownerReferences"]] == ["1", "2"]


def test_strategic_merge_retain_keys_clears_unlisted_fields() -> None:
    original = pod(volumes=[{"name": "data", "emptyDir": {}}])
    patch = {
        "spec": {
            "volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]
        }
    }
    result = apply_strategic_merge_patch(original, patch, "Pod")
    assert result["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/x"}}]


def test_strategic_merge_honours_set_element_order() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "nginx:1.26"}],
        }
    }
    result = apply_strategic_merge_patch(pod(), patch, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["sidecar", "app"]


def test_strategic_merge_item_without_merge_key_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        apply_strategic_merge_patch(pod(), {"spec": {"containers": [{"image": "x"}]}}, "Pod")
    assert caught.value.code == 400
    assert "merge key: name" in caught.value.message


def test_strategic_merge_new_item_is_stripped_of_directives() -> None:
    patch = {
        "spec": {"containers": [{"name": "new", "env": [{"name": "A", "$patch": "delete"}], "image": "x"}]}
    }
    result = apply_strategic_merge_patch(pod(), patch, "Pod")
    assert result["spec"]["containers"][-1] == {"name": "new", "env": [], "image": "x"}


def test_strategic_merge_merges_service_ports_by_port() -> None:
    svc = {
        "kind": "Service",
        "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
    }
    result = apply_strategic_merge_patch(
        svc, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}, "Service"
    )
    assert result["spec"]["ports"][0] == {"port": 80, "name": "http", "targetPort": 8080}
    assert len(result["spec"]["ports"]) == 2


def test_strategic_merge_merges_pod_template_containers_in_workloads() -> None:
    deployment = {
        "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}},
    }
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}}
    result = apply_strategic_merge_patch(deployment, patch, "Deployment")
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["a", "b"]


def test_strategic_merge_is_refused_for_custom_resources_only() -> None:
    assert supports_strategic_merge("Pod", is_custom=False)
    assert not supports_strategic_merge("ScaleSet", is_custom=True)


# --- managed fields on create and update --------------------------------------------------------------


def fields_of(obj: dict[str, Any], manager: str, operation: str | None = None) -> dict[str, Any]:
    for entry in obj["metadata"].get("managedFields", []):
        if entry["manager"] == manager and (operation is None or entry["operation"] == operation):
            return entry["fieldsV1"]
    raise AssertionError(f"no managedFields entry for {manager}")


def test_create_records_every_field_for_the_creating_manager() -> None:
    created = record_update(None, pod(), "kubectl-create")
    [entry] = created["metadata"]["managedFields"]
    assert (
        entry["operation"] == "Update" and entry["apiVersion"] == "v1" and entry["fieldsType"] == "FieldsV1"
    )
    fields = entry["fieldsV1"]
    assert "f:name" not in fields["f:metadata"]
    assert fields["f:metadata"]["f:labels"] == {".": {}, "f:app": {}}
    app = fields["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert app["."] == {} and app["f:image"] == {}
    assert app["f:ports"]['k:{"containerPort":80}'] == {".": {}, "f:containerPort": {}}


def test_update_moves_ownership_of_changed_fields_to_the_updater() -> None:
    created = record_update(None, pod(), "creator")
    changed = copy.deepcopy(created)
    changed["spec"]["containers"][0]["image"] = "nginx:1.26"
    updated = record_update(created, changed, "kubectl-edit")
    editor = fields_of(updated, "kubectl-edit")
    assert editor == {"f:spec": {"f:containers": {'k:{"name":"app"}': {"f:image": {}}}}}
    creator = fields_of(updated, "creator")
    assert "f:image" not in creator["f:spec"]["f:containers"]['k:{"name":"app"}']


def test_update_without_changes_adds_no_manager() -> None:
    created = record_update(None, pod(), "creator")
    same = record_update(created, copy.deepcopy(created), "someone-else")
    assert [e["manager"] for e in same["metadata"]["managedFields"]] == ["creator"]


def test_removed_fields_are_no_longer_owned() -> None:
    created = record_update(None, pod(), "creator")
    changed = copy.deepcopy(created)
    del changed["metadata"]["labels"]
    updated = record_update(created, changed, "other")
    assert "f:labels" not in fields_of(updated, "creator").get("f:metadata", {})


# --- server-side apply --------------------------------------------------------------------------------


def scaleset(replicas: int = 3, image: str = "nginx:1.25") -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


def test_apply_creates_an_object_owned_by_the_applier() -> None:
    created = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    [entry] = created["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert entry["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert created["spec"]["replicas"] == 3


def test_apply_conflicts_with_a_field_another_manager_changed() -> None:
    live = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    live = record_update(live, scaled, "kubectl-scale")
    with pytest.raises(ApiError) as caught:
        apply_server_side(live, scaleset(replicas=3), "kubectl", False, "ScaleSet")
    error = caught.value
    assert error.code == 409 and error.reason == "Conflict"
    assert error.message.startswith(
        'Apply failed with 1 conflict: conflict with "kubectl-scale" using fleet.scaleset.dev/v1alpha1'
    )
    assert error.message.endswith(": .spec.replicas")
    assert error.causes[0].field == ".spec.replicas"
    assert error.causes[0].reason == "FieldManagerConflict"


def test_apply_with_the_same_value_shares_ownership_without_conflict() -> None:
    live = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    live = record_update(live, scaled, "kubectl-scale")
    result = apply_server_side(live, scaleset(replicas=5), "kubectl", False, "ScaleSet")
    assert result["spec"]["replicas"] == 5
    assert "f:replicas" in fields_of(result, "kubectl", "Apply")["f:spec"]


def test_forced_apply_takes_the_field_over() -> None:
    live = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    live = record_update(live, scaled, "kubectl-scale")
    result = apply_server_side(live, scaleset(replicas=3), "kubectl", True, "ScaleSet")
    assert result["spec"]["replicas"] == 3
    managers = [e["manager"] for e in result["metadata"]["managedFields"]]
    assert managers == ["kubectl"]


def test_apply_removes_fields_it_no_longer_applies() -> None:
    config = scaleset()
    config["spec"]["paused"] = True
    live = apply_server_side(None, config, "kubectl", False, "ScaleSet")
    result = apply_server_side(live, scaleset(), "kubectl", False, "ScaleSet")
    assert "paused" not in result["spec"]


def test_apply_keeps_fields_another_manager_also_owns() -> None:
    config = scaleset()
    config["spec"]["paused"] = True
    live = apply_server_side(None, config, "kubectl", False, "ScaleSet")
    live = apply_server_side(live, config, "gitops", False, "ScaleSet")
    result = apply_server_side(live, scaleset(), "kubectl", False, "ScaleSet")
    assert result["spec"]["paused"] is True


def test_apply_keeps_fields_it_never_applied() -> None:
    live = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    changed = copy.deepcopy(live)
    changed["spec"]["paused"] = True
    live = record_update(live, changed, "operator")
    result = apply_server_side(live, scaleset(), "kubectl", False, "ScaleSet")
    assert result["spec"]["paused"] is True


def test_first_apply_to_an_unmanaged_object_conflicts_with_its_existing_values() -> None:
    live = scaleset(replicas=7)
    with pytest.raises(ApiError) as caught:
        apply_server_side(live, scaleset(replicas=3), "kubectl", False, "ScaleSet")
    assert 'conflict with "before-first-apply"' in caught.value.message


def test_apply_merges_built_in_lists_by_merge_key() -> None:
    live = apply_server_side(None, pod(), "kubectl", False, "Pod")
    other = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0"},
        "spec": {"containers": [{"name": "debug", "image": "busybox"}]},
    }
    result = apply_server_side(live, other, "debugger", False, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["app", "sidecar", "debug"]


def test_apply_drops_a_list_item_the_manager_no_longer_applies() -> None:
    live = apply_server_side(None, pod(), "kubectl", False, "Pod")
    fewer = pod()
    fewer["spec"]["containers"] = fewer["spec"]["containers"][:1]
    result = apply_server_side(live, fewer, "kubectl", False, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["app"]


def test_apply_uses_list_map_keys_from_a_crd_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "extensions": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    }
                },
            }
        },
    }
    base = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "ScaleSet", "metadata": {"name": "web"}}
    live = apply_server_side(
        None, {**base, "spec": {"extensions": [{"name": "a"}]}}, "one", False, "ScaleSet", schema=schema
    )
    result = apply_server_side(
        live, {**base, "spec": {"extensions": [{"name": "b"}]}}, "two", False, "ScaleSet", schema=schema
    )
    assert result["spec"]["extensions"] == [{"name": "a"}, {"name": "b"}]
    entry = fields_of(result, "two")
    assert entry["f:spec"]["f:extensions"] == {'k:{"name":"b"}': {".": {}, "f:name": {}}}


def test_apply_replaces_atomic_lists_of_custom_resources() -> None:
    base = {"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "t"}}
    live = apply_server_side(None, {**base, "spec": {"items": [1, 2]}}, "one", False, "Thing")
    result = apply_server_side(live, {**base, "spec": {"items": [3]}}, "one", False, "Thing")
    assert result["spec"]["items"] == [3]


def test_apply_without_field_manager_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        apply_server_side(None, scaleset(), "", False, "ScaleSet")
    assert caught.value.code == 400


def test_apply_with_managed_fields_in_the_configuration_is_a_bad_request() -> None:
    config = scaleset()
    config["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(ApiError) as caught:
        apply_server_side(None, config, "kubectl", False, "ScaleSet")
    assert caught.value.code == 400


def test_conflicts_with_several_fields_are_listed_per_manager() -> None:
    live = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    changed = copy.deepcopy(live)
    changed["spec"]["replicas"] = 9
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    live = record_update(live, changed, "editor")
    with pytest.raises(ApiError) as caught:
        apply_server_side(live, scaleset(), "kubectl", False, "ScaleSet")
    message = caught.value.message
    assert message.startswith('Apply failed with 2 conflicts: conflicts with "editor"')
    assert "- .spec.replicas" in message
    assert "- .spec.template.spec.containers" in message


def test_apply_keeps_an_object_its_previous_field_set_named_as_a_member() -> None:
    # kubectl's client-side to server-side apply migration hands the applier sets that name objects
    # themselves ("f:spec": {".": {}}); re-applying must not drop the whole object.
    live = apply_server_side(None, scaleset(), "kubectl", False, "ScaleSet")
    entry = live["metadata"]["managedFields"][0]
    entry["fieldsV1"]["f:spec"]["."] = {}
    entry["fieldsV1"]["f:spec"]["f:paused"] = {}
    live["spec"]["paused"] = False
    result = apply_server_side(live, scaleset(), "kubectl", False, "ScaleSet")
    assert result["spec"]["replicas"] == 3
    assert "paused" not in result["spec"]


def test_apply_keeps_a_list_item_while_another_manager_owns_a_field_in_it() -> None:
    live = apply_server_side(None, pod(), "kubectl", False, "Pod")
    changed = copy.deepcopy(live)
    changed["spec"]["containers"][1]["image"] = "busybox:1.37"
    live = record_update(live, changed, "updater")
    fewer = pod()
    fewer["spec"]["containers"] = fewer["spec"]["containers"][:1]
    result = apply_server_side(live, fewer, "kubectl", False, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["app", "sidecar"]
    assert result["spec"]["containers"][1]["image"] == "busybox:1.37"


container_names = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), unique=True, max_size=5)


@given(container_names, container_names)
def test_strategic_merge_keeps_every_container_and_appends_new_ones_in_order(
    before: list[str], patched: list[str]
) -> None:
    original = pod(containers=[{"name": n, "image": "old"} for n in before])
    patch = {"spec": {"containers": [{"name": n, "image": "new"} for n in patched]}}
    result = apply_strategic_merge_patch(original, patch, "Pod")
    names = [c["name"] for c in result["spec"]["containers"]]
    assert names == before + [n for n in patched if n not in before]
    assert all((c["image"] == "new") == (c["name"] in patched) for c in result["spec"]["containers"])


spec_values = st.dictionaries(
    st.sampled_from(["replicas", "paused", "timeZone", "osContainer"]),
    st.integers(min_value=0, max_value=9) | st.booleans() | st.sampled_from(["UTC", "app"]),
    min_size=1,
    max_size=4,
)


def without_times(obj: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(obj)
    for entry in stripped["metadata"].get("managedFields", []):
        entry.pop("time", None)
    return stripped


@given(spec_values, spec_values)
def test_applying_the_same_configuration_again_changes_nothing(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    base = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "ScaleSet", "metadata": {"name": "web"}}
    live = apply_server_side(None, {**base, "spec": first}, "kubectl", False, "ScaleSet")
    once = apply_server_side(live, {**base, "spec": second}, "kubectl", False, "ScaleSet")
    twice = apply_server_side(once, {**base, "spec": second}, "kubectl", False, "ScaleSet")
    assert without_times(once) == without_times(twice)
    # A sole applier's object is exactly what it applied last.
    assert once.get("spec", {}) == second
