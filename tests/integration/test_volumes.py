"""Data disks on a live API: the retention policy applied to the claims that exist, claims the ScaleSet did
not create left alone, and names held by objects that are not the ScaleSet's reported, never taken."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_ORDINAL, LABEL_SCALESET
from tests.integration.helpers import (
    IMAGE,
    create,
    is_ready,
    pods_of,
    scaleset_body,
    scaleset_ready,
    stalled,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def _claims(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in kube.list(core_path("persistentvolumeclaims", namespace))}


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _events(kube: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.list(core_path("events", namespace)) if e.get("reason") == reason]


def _ready(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(lambda: scaleset_ready(kube, namespace, name), TIMEOUT, f"{name} Ready")
    return result


def _observed(kube: Kube, namespace: str, name: str) -> bool:
    scaleset = kube.get(fleet_path("scalesets", namespace, name))
    return bool(
        (scaleset.get("status") or {}).get("observedGeneration") == scaleset["metadata"]["generation"]
    )


def _set_retention(kube: Kube, namespace: str, name: str, **policy: str) -> None:
    kube.patch(
        fleet_path("scalesets", namespace, name),
        {"spec": {"persistentVolumeClaimRetentionPolicy": policy}},
        MERGE_PATCH,
    )


def _delete_and_wait_for_pods(kube: Kube, namespace: str, name: str) -> None:
    """Delete the ScaleSet (background propagation, as kubectl does) and wait until the garbage collector
    has removed its pods: by then it has also dealt with every claim the ScaleSet owns."""
    kube.delete(fleet_path("scalesets", namespace, name), propagation="Background")
    wait_for(lambda: not pods_of(kube, namespace, name), TIMEOUT, f"the pods of {name} collected")


def test_when_deleted_switched_to_retain_keeps_every_claim_when_the_scaleset_is_deleted(
    kube: Kube, namespace: str
) -> None:
    # KEP-1847: "When mutating any delete policy to retain, the PVC ownerRefs to the StatefulSet are
    # removed", so the garbage collector leaves the claims when the set goes.
    body = scaleset_body("db", 2, claims=True)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete"}
    create(kube, namespace, body)
    uid = _ready(kube, namespace, "db")["metadata"]["uid"]
    claims = _claims(kube, namespace)
    assert sorted(claims) == ["data-db-0", "data-db-1"]
    assert all(_owned_by(c, uid) for c in claims.values()), "whenDeleted: Delete makes the ScaleSet the owner"

    _set_retention(kube, namespace, "db", whenDeleted="Retain")
    wait_for(
        lambda: not any(_owned_by(c, uid) for c in _claims(kube, namespace).values()),
        TIMEOUT,
        "the owner reference to the ScaleSet removed from every claim",
    )
    kept = {n: c["metadata"]["uid"] for n, c in _claims(kube, namespace).items()}
    _delete_and_wait_for_pods(kube, namespace, "db")
    after = _claims(kube, namespace)
    assert {n: c["metadata"]["uid"] for n, c in after.items()} == kept, "every claim survives its ScaleSet"
    assert not any(c["metadata"].get("deletionTimestamp") for c in after.values())


def test_when_deleted_switched_to_delete_gives_existing_claims_to_the_scaleset(
    kube: Kube, namespace: str
) -> None:
    # KEP-1847: "When mutating from the Retain policy to a deletion policy, the StatefulSet PVCs are
    # updated with an ownerRef to the StatefulSet."
    create(kube, namespace, scaleset_body("db", 2, claims=True))
    uid = _ready(kube, namespace, "db")["metadata"]["uid"]
    assert not any(_owned_by(c, uid) for c in _claims(kube, namespace).values()), "Retain is the default"

    _set_retention(kube, namespace, "db", whenDeleted="Delete")
    wait_for(
        lambda: all(_owned_by(c, uid) for c in _claims(kube, namespace).values()),
        TIMEOUT,
        "every claim owned by the ScaleSet",
    )
    _delete_and_wait_for_pods(kube, namespace, "db")
    wait_for(lambda: not _claims(kube, namespace), TIMEOUT, "the claims to go with their ScaleSet")


def test_when_scaled_is_read_when_the_pod_is_gone_so_switching_back_to_retain_keeps_the_claim(
    kube: Kube, namespace: str
) -> None:
    # The API: "The Delete policy causes the associated PVCs for any excess pods above the replica
    # count to be deleted"; the operator deletes them itself once their pod is gone, so the policy of
    # that moment decides, both ways.
    body = scaleset_body("db", 2, claims=True)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenScaled": "Delete"}
    create(kube, namespace, body)
    _ready(kube, namespace, "db")
    hold = {"metadata": {"finalizers": ["example.com/hold"]}}
    kube.patch(core_path("pods", namespace, "db-1"), hold, MERGE_PATCH)
    kube.patch(fleet_path("scalesets", namespace, "db"), {"spec": {"replicas": 1}}, MERGE_PATCH)
    wait_for(
        lambda: kube.get(core_path("pods", namespace, "db-1"))["metadata"].get("deletionTimestamp"),
        TIMEOUT,
        "db-1 terminating, held by its finalizer",
    )
    time.sleep(1)
    assert "data-db-1" in _claims(kube, namespace), "a claim goes only once its pod is gone"

    _set_retention(kube, namespace, "db", whenScaled="Retain")
    wait_for(lambda: _observed(kube, namespace, "db"), TIMEOUT, "a pass to read Retain")
    kube.patch(core_path("pods", namespace, "db-1"), {"metadata": {"finalizers": None}}, MERGE_PATCH)
    wait_for(lambda: len(pods_of(kube, namespace, "db")) == 1, TIMEOUT, "db-1 gone")
    time.sleep(6)  # longer than the operator's resync here (5 s): at least one pass saw db-1 gone
    assert "data-db-1" in _claims(kube, namespace)

    _set_retention(kube, namespace, "db", whenScaled="Delete")
    wait_for(lambda: "data-db-1" not in _claims(kube, namespace), TIMEOUT, "data-db-1 released")
    assert "data-db-0" in _claims(kube, namespace)


def test_claims_kept_from_an_earlier_scaleset_are_mounted_and_never_deleted_by_a_scale_down(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, scaleset_body("db", 3, claims=True))  # Retain: the claims outlive it
    _ready(kube, namespace, "db")
    _delete_and_wait_for_pods(kube, namespace, "db")
    kept = {n: c["metadata"]["uid"] for n, c in _claims(kube, namespace).items()}
    assert sorted(kept) == ["data-db-0", "data-db-1", "data-db-2"]
    # A claim labelled for the ScaleSet but for no instance (no ordinal label): never anyone's to delete.
    stray = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "scratch-db", "labels": {LABEL_SCALESET: "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kube.create(core_path("persistentvolumeclaims", namespace), stray)

    body = scaleset_body("db", 4, claims=True)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenScaled": "Delete"}
    create(kube, namespace, body)
    _ready(kube, namespace, "db")
    mounted = {
        p["metadata"]["name"]: [
            v["persistentVolumeClaim"]["claimName"]
            for v in p["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        for p in pods_of(kube, namespace, "db")
    }
    assert mounted == {f"db-{i}": [f"data-db-{i}"] for i in range(4)}
    claims = _claims(kube, namespace)
    assert {n: claims[n]["metadata"]["uid"] for n in kept} == kept, "reused by name, not made again"
    assert _events(kube, namespace, "ClaimReused")

    kube.patch(fleet_path("scalesets", namespace, "db"), {"spec": {"replicas": 1}}, MERGE_PATCH)
    # The new ScaleSet's own claim of a scaled-away instance goes: the scale-down has been dealt with.
    wait_for(lambda: "data-db-3" not in _claims(kube, namespace), TIMEOUT, "data-db-3 released")
    wait_for(lambda: len(pods_of(kube, namespace, "db")) == 1, TIMEOUT, "db scaled in to one instance")
    after = _claims(kube, namespace)
    assert {n: after[n]["metadata"]["uid"] for n in kept} == kept, "an earlier ScaleSet's claims stay"
    assert not any(after[n]["metadata"].get("deletionTimestamp") for n in kept)
    assert "scratch-db" in after


def _foreign_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "someone-else"}},
        "spec": {"containers": [{"name": "main", "image": f"{IMAGE}:v1"}]},
    }


def _create_conflicts() -> float:
    """How many creates the operator (in this process) has had refused with 409 so far."""
    return REGISTRY.get_sample_value("scaleset_api_requests_total", {"verb": "create", "code": "409"}) or 0.0


def test_a_pod_name_held_by_a_foreign_pod_is_reported_never_taken_and_not_retried_in_a_loop(
    kube: Kube, namespace: str
) -> None:
    foreign = kube.create(core_path("pods", namespace), _foreign_pod("web-1"))
    create(kube, namespace, scaleset_body("web", 2))
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "NameConflict"
    assert "Pod web-1 " in report["message"] and "not owned by this ScaleSet" in report["message"]
    assert _events(kube, namespace, "NameConflict")
    # Each change of web-0 wakes a pass (and so a retry) until it runs; then nothing changes.
    wait_for(lambda: is_ready(kube.get(core_path("pods", namespace, "web-0"))), TIMEOUT, "web-0 Ready")
    time.sleep(0.5)

    before = _create_conflicts()
    time.sleep(4)
    # The operator's resync here is 5 s: at most one more attempt, never one a second (or tighter).
    assert _create_conflicts() - before <= 2
    held = kube.get(core_path("pods", namespace, "web-1"))
    assert held["metadata"]["uid"] == foreign["metadata"]["uid"]
    assert not held["metadata"].get("ownerReferences") and not held["metadata"].get("deletionTimestamp")
    labels = held["metadata"]["labels"]
    assert labels["app"] == "someone-else" and not any(k.startswith("fleet.scaleset.dev/") for k in labels)

    kube.delete(core_path("pods", namespace, "web-1"), propagation="Background")
    _ready(kube, namespace, "web")
    assert sorted(p["metadata"]["name"] for p in pods_of(kube, namespace, "web")) == ["web-0", "web-1"]


def test_a_claim_name_held_by_a_foreign_claim_is_reported_and_mounted_once_handed_over(
    kube: Kube, namespace: str
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-web-0"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    foreign = kube.create(core_path("persistentvolumeclaims", namespace), claim)
    create(kube, namespace, scaleset_body("web", 1, claims=True))
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "NameConflict"
    assert "PersistentVolumeClaim data-web-0 " in report["message"]
    assert f"{LABEL_SCALESET}=web, {LABEL_ORDINAL}=0" in report["message"]
    assert not pods_of(kube, namespace, "web"), "no instance mounts a claim that is not its own"

    kube.patch(
        core_path("persistentvolumeclaims", namespace, "data-web-0"),
        {"metadata": {"labels": {LABEL_SCALESET: "web", LABEL_ORDINAL: "0"}}},
        MERGE_PATCH,
    )
    _ready(kube, namespace, "web")
    (pod,) = pods_of(kube, namespace, "web")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}} in pod["spec"]["volumes"]
    assert (
        kube.get(core_path("persistentvolumeclaims", namespace, "data-web-0"))["metadata"]["uid"]
        == (foreign["metadata"]["uid"])
    )


def test_a_claim_the_api_server_refuses_is_reported_with_the_claim_and_the_field(
    kube: Kube, namespace: str
) -> None:
    body = scaleset_body("web", 1, claims=True)
    body["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = "Data"  # no valid claim name
    create(kube, namespace, body)
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "ClaimRejected"
    assert "spec.volumeClaimTemplates[0] (Data)" in report["message"]
    assert "Data-web-0" in report["message"] and "metadata.name" in report["message"]
    assert not pods_of(kube, namespace, "web")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("web-green", "must not be or end in -green or -surge"),
        ("web-surge", "must not be or end in -green or -surge"),
        ("a" * 48, "must be at most 47 characters"),
        ("web.prod", "must be a DNS label"),
    ],
)
def test_a_scaleset_name_that_cannot_name_its_instances_is_refused_at_admission(
    kube: Kube, namespace: str, name: str, rule: str
) -> None:
    with pytest.raises(ApiError) as refused:
        create(kube, namespace, scaleset_body(name, 1))
    assert refused.value.status == 422
    assert rule in refused.value.message


def test_the_longest_name_admission_allows_runs_its_instances(kube: Kube, namespace: str) -> None:
    name = "a" * 47
    create(kube, namespace, scaleset_body(name, 2))
    _ready(kube, namespace, name)
    assert sorted(p["metadata"]["name"] for p in pods_of(kube, namespace, name)) == [f"{name}-0", f"{name}-1"]
