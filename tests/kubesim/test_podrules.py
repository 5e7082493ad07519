"""Pod defaults, pod create validation and the immutability rules of pod updates."""

from __future__ import annotations

import copy
from typing import Any

from kubesim.podrules import (
    UPDATE_FORBIDDEN_MESSAGE,
    default_pod,
    qos_class,
    validate_pod_create,
    validate_pod_update,
)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}], **spec},
    }


def fields(causes: list[Any]) -> list[str]:
    return [c.field for c in causes]


# --- defaults -----------------------------------------------------------------------------------------


def test_defaults_are_those_the_api_server_fills_in() -> None:
    spec = default_pod(pod())["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    assert spec["priority"] == 0 and spec["preemptionPolicy"] == "PreemptLowerPriority"
    container = spec["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {}


def test_latest_and_untagged_images_are_always_pulled() -> None:
    for image, policy in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("registry:5000/nginx", "Always"),
        ("registry:5000/nginx:1.25", "IfNotPresent"),
        ("nginx@sha256:abc", "IfNotPresent"),
    ]:
        defaulted = default_pod(pod(containers=[{"name": "app", "image": image}]))
        assert defaulted["spec"]["containers"][0]["imagePullPolicy"] == policy, image


def test_new_pod_tolerates_unready_and_unreachable_nodes_for_five_minutes() -> None:
    tolerations = default_pod(pod())["spec"]["tolerations"]
    assert {t["key"] for t in tolerations} == {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    }
    assert all(t["tolerationSeconds"] == 300 and t["effect"] == "NoExecute" for t in tolerations)


def test_new_pod_is_pending_with_its_qos_class() -> None:
    assert default_pod(pod())["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_defaulting_does_not_touch_its_input_and_is_idempotent() -> None:
    original = pod()
    once = default_pod(original)
    assert "restartPolicy" not in original["spec"]
    assert default_pod(once, creating=False) == once


def test_ports_probes_and_volumes_get_their_defaults() -> None:
    container = {
        "name": "app",
        "image": "nginx:1",
        "ports": [{"containerPort": 80}],
        "readinessProbe": {"httpGet": {"port": 80}},
    }
    spec = default_pod(pod(containers=[container], volumes=[{"name": "cfg", "configMap": {"name": "c"}}]))[
        "spec"
    ]
    assert spec["containers"][0]["ports"][0]["protocol"] == "TCP"
    probe = spec["containers"][0]["readinessProbe"]
    assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"]) == (10, 1, 3)
    assert probe["httpGet"]["scheme"] == "HTTP"
    assert spec["volumes"][0]["configMap"]["defaultMode"] == 420


def test_requests_default_to_limits_and_make_the_pod_guaranteed() -> None:
    limits = {"cpu": "1", "memory": "1Gi"}
    spec = default_pod(pod(containers=[{"name": "app", "image": "x:1", "resources": {"limits": limits}}]))[
        "spec"
    ]
    assert spec["containers"][0]["resources"]["requests"] == limits
    assert qos_class(spec) == "Guaranteed"


def test_requests_without_limits_make_the_pod_burstable() -> None:
    resources = {"requests": {"cpu": "100m"}}
    assert qos_class({"containers": [{"name": "a", "resources": resources}]}) == "Burstable"


# --- create -------------------------------------------------------------------------------------------


def test_a_valid_pod_has_no_errors() -> None:
    assert validate_pod_create(default_pod(pod())) == []


def test_pod_without_containers_is_refused() -> None:
    causes = validate_pod_create(pod(containers=[]))
    assert [(c.field, c.message) for c in causes] == [("spec.containers", "Required value")]


def test_containers_need_a_name_and_an_image() -> None:
    causes = validate_pod_create(pod(containers=[{}]))
    assert fields(causes) == ["spec.containers[0].name", "spec.containers[0].image"]
    assert all(c.reason == "FieldValueRequired" for c in causes)


def test_container_names_are_unique_across_init_and_app_containers() -> None:
    causes = validate_pod_create(
        pod(initContainers=[{"name": "app", "image": "x"}], containers=[{"name": "app", "image": "y"}])
    )
    assert [(c.field, c.message) for c in causes] == [("spec.containers[0].name", 'Duplicate value: "app"')]


def test_container_names_must_be_dns_labels() -> None:
    [cause] = validate_pod_create(pod(containers=[{"name": "App_1", "image": "x"}]))
    assert cause.field == "spec.containers[0].name"
    assert cause.message.startswith('Invalid value: "App_1": a lowercase RFC 1123 label')


def test_pod_name_must_be_a_dns_subdomain() -> None:
    bad = pod()
    bad["metadata"]["name"] = "Web_0"
    [cause] = validate_pod_create(bad)
    assert cause.field == "metadata.name"
    assert "a lowercase RFC 1123 subdomain must consist of" in cause.message


def test_restart_policy_must_be_supported() -> None:
    [cause] = validate_pod_create(pod(restartPolicy="Sometimes"))
    assert cause.message == 'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'


def test_volume_mounts_must_name_a_volume() -> None:
    container = {"name": "app", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    [cause] = validate_pod_create(pod(containers=[container]))
    assert (cause.field, cause.message) == ("spec.containers[0].volumeMounts[0].name", 'Not found: "data"')


def test_container_ports_must_be_in_range() -> None:
    container = {"name": "app", "image": "x", "ports": [{"containerPort": 70000}]}
    [cause] = validate_pod_create(pod(containers=[container]))
    assert cause.field == "spec.containers[0].ports[0].containerPort"


# --- update -------------------------------------------------------------------------------------------


def live_pod(**spec: Any) -> dict[str, Any]:
    return default_pod(pod(**spec))


def test_changing_a_container_image_is_allowed() -> None:
    old = live_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert validate_pod_update(old, new) == []


def test_changing_anything_else_in_the_spec_is_forbidden() -> None:
    old = live_pod()
    new = copy.deepcopy(old)
    new["spec"]["restartPolicy"] = "Never"
    [cause] = validate_pod_update(old, new)
    assert cause.field == "spec" and cause.reason == "FieldValueForbidden"
    assert cause.message.startswith("Forbidden: " + UPDATE_FORBIDDEN_MESSAGE)
    assert 'spec.restartPolicy: "Always" -> "Never"' in cause.message


def test_adding_a_container_is_forbidden() -> None:
    old = live_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"].append({"name": "extra", "image": "x"})
    assert fields(validate_pod_update(old, new)) == ["spec"]


def test_emptying_an_image_is_refused() -> None:
    old = live_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = ""
    assert "spec.containers[0].image" in fields(validate_pod_update(old, new))


def test_metadata_and_status_changes_are_not_the_business_of_pod_rules() -> None:
    old = live_pod()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "b"}
    new["status"] = {"phase": "Running"}
    assert validate_pod_update(old, new) == []


def test_tolerations_may_be_added_but_not_removed() -> None:
    old = live_pod()
    added = copy.deepcopy(old)
    added["spec"]["tolerations"].append({"key": "maintenance", "operator": "Exists"})
    assert validate_pod_update(old, added) == []
    removed = copy.deepcopy(old)
    removed["spec"]["tolerations"] = removed["spec"]["tolerations"][:1]
    [cause] = validate_pod_update(old, removed)
    assert cause.message == "Forbidden: existing toleration can not be modified except its tolerationSeconds"


def test_toleration_seconds_may_change() -> None:
    old = live_pod()
    new = copy.deepcopy(old)
    new["spec"]["tolerations"][0]["tolerationSeconds"] = 10
    assert validate_pod_update(old, new) == []


def test_active_deadline_may_be_set_or_lowered_but_not_raised_or_removed() -> None:
    old = live_pod()
    set_once = copy.deepcopy(old)
    set_once["spec"]["activeDeadlineSeconds"] = 100
    assert validate_pod_update(old, set_once) == []
    lowered = copy.deepcopy(set_once)
    lowered["spec"]["activeDeadlineSeconds"] = 50
    assert validate_pod_update(set_once, lowered) == []
    raised = copy.deepcopy(set_once)
    raised["spec"]["activeDeadlineSeconds"] = 200
    assert "must be less than or equal to previous value" in validate_pod_update(set_once, raised)[0].message
    removed = copy.deepcopy(set_once)
    del removed["spec"]["activeDeadlineSeconds"]
    assert (
        "must not update from a positive integer to nil value"
        in validate_pod_update(set_once, removed)[0].message
    )


def test_scheduling_gates_may_only_be_removed() -> None:
    old = live_pod(schedulingGates=[{"name": "wait"}])
    removed = copy.deepcopy(old)
    removed["spec"]["schedulingGates"] = []
    assert validate_pod_update(old, removed) == []
    added = copy.deepcopy(old)
    added["spec"]["schedulingGates"].append({"name": "more"})
    assert "only deletion is allowed" in validate_pod_update(old, added)[0].message


def test_node_name_may_be_set_once_by_binding() -> None:
    old = live_pod()
    bound = copy.deepcopy(old)
    bound["spec"]["nodeName"] = "node-1"
    assert validate_pod_update(old, bound) == []
    moved = copy.deepcopy(bound)
    moved["spec"]["nodeName"] = "node-2"
    assert fields(validate_pod_update(bound, moved)) == ["spec"]


def test_grace_period_may_go_to_one_from_negative() -> None:
    old = live_pod(terminationGracePeriodSeconds=-1)
    new = copy.deepcopy(old)
    new["spec"]["terminationGracePeriodSeconds"] = 1
    assert validate_pod_update(old, new) == []
