"""Input the operator cannot honour: reported in conditions and events, and no instance is touched for it."""

from __future__ import annotations

import pytest

from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, core_path, fleet_path
from tests.integration.helpers import (
    IMAGE,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    stalled,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def _fingerprint(kube: Kube, namespace: str, name: str) -> dict[str, tuple[str, str]]:
    return {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]["containers"][0]["image"])
        for p in pods_of(kube, namespace, name)
    }


def test_template_the_api_server_refuses_touches_no_instance(kube: Kube, namespace: str) -> None:
    kube.create(fleet_path("upgradepolicies", namespace), policy_body("reimage", updateMethod="Reimage"))
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 3, policy="reimage"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    before = _fingerprint(kube, namespace, "web")
    # A mount of a volume the pod does not have: the CRD cannot see it, the pod API refuses it.
    container = {
        "name": "os",
        "image": f"{IMAGE}:v2",
        "volumeMounts": [{"name": "nowhere", "mountPath": "/data"}],
    }
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {"spec": {"template": {"spec": {"containers": [container]}}}},
        MERGE_PATCH,
    )
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "TemplateRejected"
    assert "nowhere" in report["message"]
    assert _fingerprint(kube, namespace, "web") == before


def test_spec_the_operator_cannot_honour_is_reported_and_instances_kept(kube: Kube, namespace: str) -> None:
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 2))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    before = _fingerprint(kube, namespace, "web")
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {"spec": {"osContainer": "missing", "replicas": 5}},
        MERGE_PATCH,
    )
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "InvalidSpec"
    assert "spec.osContainer" in report["message"]
    assert _fingerprint(kube, namespace, "web") == before, "no scale-out on a spec that cannot be honoured"


def test_upgrade_domain_count_cannot_change_while_an_upgrade_runs(kube: Kube, namespace: str) -> None:
    kube.create(
        fleet_path("upgradepolicies", namespace),
        policy_body("stuck", healthCheck={"onInstanceStartTimeout": "Pause", "instanceStartTimeout": "30m"}),
    )
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 5, policy="stuck"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    set_image(kube, namespace, "web", f"{IMAGE}:v2-never-ready")
    wait_for(
        lambda: (
            (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {})
            .get("upgrade", {})
            .get("locked")
        ),
        TIMEOUT,
        "the upgrade to lock",
    )
    with pytest.raises(ApiError) as refused:
        kube.patch(
            fleet_path("scalesets", namespace, "web"), {"spec": {"upgradeDomainCount": 3}}, MERGE_PATCH
        )
    assert refused.value.status == 422
    assert "upgradeDomainCount cannot change while an upgrade is in progress" in refused.value.message


def test_shrinking_a_temp_disk_during_an_upgrade_is_refused(kube: Kube, namespace: str) -> None:
    kube.create(
        fleet_path("upgradepolicies", namespace),
        policy_body("stuck", healthCheck={"onInstanceStartTimeout": "Pause", "instanceStartTimeout": "30m"}),
    )
    body = scaleset_body("web", 5, policy="stuck")
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}}]
    kube.create(fleet_path("scalesets", namespace), body)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    set_image(kube, namespace, "web", f"{IMAGE}:v2-never-ready")
    wait_for(
        lambda: (
            (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {})
            .get("upgrade", {})
            .get("currentBatch")
        ),
        TIMEOUT,
        "the first batch",
    )
    wait_for(
        lambda: kube.get(core_path("pods", namespace, "web-0"))["spec"]["containers"][0]["image"].endswith(
            "never-ready"
        ),
        TIMEOUT,
        "web-0 updated in place",
    )
    before = _fingerprint(kube, namespace, "web")
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {
            "spec": {
                "template": {"spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}]}}
            }
        },
        MERGE_PATCH,
    )
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "RefusedDuringUpgrade"
    assert "sizeLimit" in report["message"] or "emptyDir" in report["message"]
    assert _fingerprint(kube, namespace, "web") == before


def _waiting_reasons(kube: Kube, namespace: str, name: str) -> set[str]:
    return {
        str(((status.get("state") or {}).get("waiting") or {}).get("reason"))
        for pod in pods_of(kube, namespace, name)
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    }


def test_image_name_that_does_not_parse_never_comes_up_ready(kube: Kube, namespace: str) -> None:
    # As a real kubelet does: the name is refused before any pull, and the container never starts.
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 2, image="bad image name"))
    wait_for(
        lambda: _waiting_reasons(kube, namespace, "web") == {"InvalidImageName"}, TIMEOUT, "InvalidImageName"
    )
    assert all(p["status"]["phase"] == "Pending" for p in pods_of(kube, namespace, "web"))
    assert scaleset_ready(kube, namespace, "web") is None
