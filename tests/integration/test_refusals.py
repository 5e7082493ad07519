"""Refusals retrying cannot lift are reported (Stalled, a reason, one sentence naming object and field) and
retried with an exponential back-off, never every second; what the server asks to wait for is waited for.

PodSecurity admission and ResourceQuota are the real API server's (the testbed); kubesim has neither, so
those tests skip there. The ServiceAccount admission plugin's refusal is real on both.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kubesim.testing import use_testbed
from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, core_path, fleet_path
from tests.integration.helpers import condition, pods_of, scaleset_body, scaleset_ready, stalled, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def _failed_passes(reason: str) -> float:
    return REGISTRY.get_sample_value("scaleset_reconcile_failures_total", {"reason": reason}) or 0.0


def _conditions(kube: Kube, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    obj = kube.get(fleet_path("scalesets", namespace, name))
    return {kind: condition(obj, kind) or {} for kind in ("Ready", "Progressing", "Stalled")}


def _uids(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, name)}


def test_a_refused_instance_is_reported_and_retried_with_back_off_until_allowed(
    kube: Kube, namespace: str
) -> None:
    # The ServiceAccount admission plugin refuses a pod whose account does not exist (403) until it does.
    body = scaleset_body("web", 2)
    body["spec"]["template"]["spec"]["serviceAccountName"] = "runner"
    kube.create(fleet_path("scalesets", namespace), body)
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "AdmissionDenied"
    assert "Pod web-0" in report["message"] and "spec.template" in report["message"]
    assert '"runner"' in report["message"]
    conditions = _conditions(kube, namespace, "web")
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Progressing"]["status"] == "False"
    assert "kept" in conditions["Progressing"]["message"]

    before = _failed_passes("AdmissionDenied")
    time.sleep(20)
    passes = _failed_passes("AdmissionDenied") - before
    # 1 s doubling: passes about 2, 4, 8 and 16 s after the first; retried every second it would be 20.
    assert 2 <= passes <= 8, f"{passes} failed passes in 20 s"

    kube.create(
        core_path("serviceaccounts", namespace),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}},
    )
    # The next pass is due at most 32 s (and its jitter) after the first: it finds the account there.
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), 60, "web Ready once the account exists")
    assert not stalled(kube, namespace, "web")


def test_a_pod_security_refusal_names_the_instance_and_the_template(kube: Kube, namespace: str) -> None:
    if not use_testbed():
        pytest.skip("kubesim has no Pod Security admission; the testbed's API server has")
    kube.patch(
        core_path("namespaces", name=namespace),
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        MERGE_PATCH,
    )
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 2))
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "PodSecurityViolation"
    assert "Pod web-0" in report["message"] and "spec.template" in report["message"]
    assert 'violates PodSecurity "restricted' in report["message"]
    assert not pods_of(kube, namespace, "web")


def test_a_resource_quota_refusal_keeps_what_runs_and_passes_once_raised(kube: Kube, namespace: str) -> None:
    if not use_testbed():
        pytest.skip("kubesim serves no ResourceQuotas; the testbed's API server does")
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": "2"}},
    }
    kube.create(core_path("resourcequotas", namespace), quota)
    wait_for(
        lambda: (kube.get(core_path("resourcequotas", namespace, "pods")).get("status") or {}).get("hard"),
        TIMEOUT,
        "the quota controller to count the namespace",
    )
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 3))
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "QuotaExceeded"
    assert "Pod web-2" in report["message"] and "spec.replicas" in report["message"]
    assert "limited: pods=2" in report["message"]
    running = _uids(kube, namespace, "web")
    assert sorted(running) == ["web-0", "web-1"]

    kube.patch(core_path("resourcequotas", namespace, "pods"), {"spec": {"hard": {"pods": "3"}}}, MERGE_PATCH)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), 90, "web Ready once the quota allows three")
    after = _uids(kube, namespace, "web")
    assert {k: after[k] for k in running} == running, "the instances that ran were never touched"


def test_an_admission_policy_denial_names_the_instance_and_the_policy(kube: Kube, namespace: str) -> None:
    if not use_testbed():
        pytest.skip("kubesim serves no ValidatingAdmissionPolicies; the testbed's API server does")
    name = f"no-latest-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "object.spec.containers.all(c, !c.image.endsWith(':latest'))",
                    "message": "images must name a version, not latest",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    admission = "/apis/admissionregistration.k8s.io/v1"
    kube.create(f"{admission}/validatingadmissionpolicies", policy)
    kube.create(f"{admission}/validatingadmissionpolicybindings", binding)
    try:
        # The API server takes a moment to load a new policy: wait until it denies a pod (a dry run).
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/app:latest"}]},
        }
        wait_for(lambda: _denied(kube, namespace, probe), TIMEOUT, "the policy in force")
        kube.create(
            fleet_path("scalesets", namespace), scaleset_body("web", 2, image="registry.example/app:latest")
        )
        report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
        # A policy's denial is a 422 (Invalid) or 403 (Forbidden), as its validation's reason says:
        # TemplateRejected names the template for the first, AdmissionDenied the policy for the second.
        assert report["reason"] in ("TemplateRejected", "AdmissionDenied")
        assert '"web-' in report["message"] or "Pod web-" in report["message"]
        assert "spec.template" in report["message"]
        assert f"ValidatingAdmissionPolicy '{name}'" in report["message"]
        assert "images must name a version, not latest" in report["message"]
    finally:
        kube.delete(f"{admission}/validatingadmissionpolicybindings/{name}")
        kube.delete(f"{admission}/validatingadmissionpolicies/{name}")


def _denied(kube: Kube, namespace: str, pod: dict[str, Any]) -> bool:
    try:
        kube.request("POST", core_path("pods", namespace), body=pod, query={"dryRun": "All"})
    except ApiError as error:
        return "denied request" in error.message
    return False


def test_a_retry_after_is_waited_for(kubesim: Any, kube: Kube, namespace: str) -> None:
    faults = getattr(kubesim, "faults", None)
    if faults is None:
        pytest.skip("injects API faults, which only kubesim can")
    faults.configure(retry_after_seconds=3)
    faults.fail_next("create", 429, resource="pods", times=2)
    try:
        started = time.monotonic()
        kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 1))
        wait_for(lambda: pods_of(kube, namespace, "web"), TIMEOUT, "web-0 created")
        waited = time.monotonic() - started
    finally:
        faults.reset()
    # Two refusals, each with Retry-After: 3; retried after the 1 s back-off it would be about 2 s.
    assert waited >= 5.5, f"created {waited:.1f}s after the ScaleSet"


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"spec": {"accessModes": ["ReadWriteOnce"]}}, "spec.volumeClaimTemplates[0].metadata"),
        ({"metadata": {"labels": {"a": "b"}}, "spec": {}}, "spec.volumeClaimTemplates[0].metadata.name"),
        ({"metadata": {"name": ""}, "spec": {}}, "spec.volumeClaimTemplates[0].metadata.name"),
    ],
)
def test_a_claim_template_without_a_name_is_refused_at_admission(
    kube: Kube, namespace: str, template: dict[str, Any], field: str
) -> None:
    body = scaleset_body("web", 1)
    body["spec"]["volumeClaimTemplates"] = [template]
    with pytest.raises(ApiError) as refused:
        kube.create(fleet_path("scalesets", namespace), body)
    assert refused.value.status == 422
    assert field in refused.value.message
    assert kube.get_or_none(fleet_path("scalesets", namespace, "web")) is None
