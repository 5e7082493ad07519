"""The operator on a live API: instances, upgrade domains, health-gated batches, scaling and repair."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path, group_path
from scaleset_operator.identity import LABEL_REVISION, LABEL_UPGRADE_DOMAIN
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    condition,
    create,
    is_ready,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def _ready_set(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(lambda: scaleset_ready(kube, namespace, name), TIMEOUT, f"{name} Ready")
    return result


def _events(kube: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.list(core_path("events", namespace)) if e.get("reason") == reason]


def test_fourteen_instances_spread_three_three_three_three_two(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 14))
    scaleset = _ready_set(kube, namespace, "web")
    pods = pods_of(kube, namespace, "web")
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(f"web-{i}" for i in range(14))
    spread = Counter(p["metadata"]["labels"][LABEL_UPGRADE_DOMAIN] for p in pods)
    assert [spread[str(d)] for d in range(5)] == [3, 3, 3, 3, 2]
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == scaleset["metadata"]["uid"] for p in pods)
    assert scaleset["status"]["readyReplicas"] == 14
    assert [d["index"] for d in scaleset["status"]["upgradeDomains"]] == [0, 1, 2, 3, 4]


def test_rollout_walks_upgrade_domains_in_order_one_batch_at_a_time(kube: Kube, namespace: str) -> None:
    # 10 instances, 20 % batches: two instances a batch, and each UD of 5 holds exactly two.
    create(kube, namespace, policy_body("rolling", mode="Rolling"))
    create(kube, namespace, scaleset_body("web", 10, policy="rolling", claims=True))
    before = _ready_set(kube, namespace, "web")
    old_revision = before["status"]["currentRevision"]
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2")
        after = wait_for(
            lambda: (
                (s := scaleset_ready(kube, namespace, "web"))
                and s["status"]["currentRevision"] != old_revision
                and s
            ),
            TIMEOUT,
            "rollout to complete",
        )
    new_revision = after["status"]["currentRevision"]
    assert after["status"]["updatedReplicas"] == 10
    assert all(
        p["metadata"]["labels"][LABEL_REVISION] == new_revision for p in pods_of(kube, namespace, "web")
    )
    assert sampler.max_unavailable(10) <= 2
    first = sampler.first_seen_on(new_revision)
    order = sorted(first, key=lambda name: first[name])
    domains = [int(name.rsplit("-", 1)[1]) % 5 for name in order]
    assert domains == sorted(domains), f"domains updated out of order: {order}"
    assert len(_events(kube, namespace, "BatchStarted")) == 5
    upgrade = after["status"]["upgrade"]
    assert upgrade["phase"] == "Completed"
    assert upgrade["locked"] is False
    stale = {"currentBatch", "currentUpgradeDomain", "reason", "message"} & set(upgrade)
    assert not stale, f"a completed upgrade keeps no batch state: {stale}"


def test_reimage_keeps_data_disk_and_in_place_keeps_pod(kube: Kube, namespace: str) -> None:
    create(
        kube,
        namespace,
        policy_body("reimage", updateMethod="Reimage", rollingUpgrade={"maxBatchInstancePercent": 20}),
    )
    create(kube, namespace, scaleset_body("db", 4, policy="reimage", claims=True, upgradeDomainCount=2))
    before = _ready_set(kube, namespace, "db")
    claims = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }
    assert sorted(claims) == [f"data-db-{i}" for i in range(4)]
    pods_before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "db")}
    set_image(kube, namespace, "db", f"{IMAGE}:v2")
    wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "db"))
            and s["status"]["currentRevision"] != before["status"]["currentRevision"]
        ),
        TIMEOUT,
        "reimage rollout",
    )
    pods_after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "db")}
    assert set(pods_after) == set(pods_before)
    assert all(pods_after[n] != pods_before[n] for n in pods_before), "reimage recreates every pod"
    claims_after = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }
    assert claims_after == claims, "data disks survive a reimage"

    # Now in place: only the image changes, so pods keep their uid (and with it emptyDir content).
    kube.patch(
        fleet_path("upgradepolicies", namespace, "reimage"),
        {"spec": {"updateMethod": "InPlaceIfPossible"}},
        MERGE_PATCH,
    )
    middle = _ready_set(kube, namespace, "db")
    set_image(kube, namespace, "db", f"{IMAGE}:v3")
    wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "db"))
            and s["status"]["currentRevision"] != middle["status"]["currentRevision"]
        ),
        TIMEOUT,
        "in-place rollout",
    )
    pods_final = {p["metadata"]["name"]: p for p in pods_of(kube, namespace, "db")}
    assert {n: p["metadata"]["uid"] for n, p in pods_final.items()} == pods_after
    for pod in pods_final.values():
        status = pod["status"]["containerStatuses"][0]
        assert status["restartCount"] >= 1
        assert status["image"].endswith(":v3")


def test_scale_out_adds_next_ordinals_and_scale_in_removes_highest(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 3))
    _ready_set(kube, namespace, "web")
    kube.patch(fleet_path("scalesets", namespace, "web", "scale"), {"spec": {"replicas": 6}}, MERGE_PATCH)
    _ready_set(kube, namespace, "web")
    assert sorted(p["metadata"]["name"] for p in pods_of(kube, namespace, "web")) == [
        f"web-{i}" for i in range(6)
    ]
    kube.patch(fleet_path("scalesets", namespace, "web", "scale"), {"spec": {"replicas": 2}}, MERGE_PATCH)
    wait_for(
        lambda: sorted(p["metadata"]["name"] for p in pods_of(kube, namespace, "web")) == ["web-0", "web-1"],
        TIMEOUT,
        "scale-in to two",
    )
    scale = kube.get(fleet_path("scalesets", namespace, "web", "scale"))
    assert scale["spec"]["replicas"] == 2


def test_manual_mode_moves_only_walked_domains(kube: Kube, namespace: str) -> None:
    create(
        kube,
        namespace,
        policy_body(
            "manual",
            mode="Manual",
            rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100},
        ),
    )
    create(kube, namespace, scaleset_body("web", 6, policy="manual", upgradeDomainCount=3))
    before = _ready_set(kube, namespace, "web")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")

    def updated_domains() -> set[int]:
        new = kube.get(fleet_path("scalesets", namespace, "web"))["status"]["updateRevision"]
        return {
            int(p["metadata"]["labels"][LABEL_UPGRADE_DOMAIN])
            for p in pods_of(kube, namespace, "web")
            if p["metadata"]["labels"][LABEL_REVISION] == new and is_ready(p)
        }

    wait_for(
        lambda: (
            kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"].get("reason")
            == "WaitingForWalk"
        ),
        TIMEOUT,
        "the rollout to report it waits for the walk",
    )
    assert updated_domains() == set()
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"walkUpgradeDomain": 0}}, MERGE_PATCH)
    wait_for(lambda: updated_domains() == {0}, TIMEOUT, "domain 0 to be upgraded")
    scaleset = kube.get(fleet_path("scalesets", namespace, "web"))
    assert scaleset["status"]["currentRevision"] == before["status"]["currentRevision"]
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"walkUpgradeDomain": 2}}, MERGE_PATCH)
    wait_for(lambda: updated_domains() == {0, 1, 2}, TIMEOUT, "every domain to be upgraded")
    _ready_set(kube, namespace, "web")


def test_paused_rollout_holds_and_resumes(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 5))
    before = _ready_set(kube, namespace, "web")
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"paused": True}}, MERGE_PATCH)
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(
        lambda: (
            kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"].get("phase") == "Paused"
        ),
        TIMEOUT,
        "the rollout to show Paused",
    )
    revisions = {p["metadata"]["labels"][LABEL_REVISION] for p in pods_of(kube, namespace, "web")}
    assert revisions == {before["status"]["currentRevision"]}
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"paused": False}}, MERGE_PATCH)
    wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] != before["status"]["currentRevision"]
        ),
        TIMEOUT,
        "the resumed rollout to complete",
    )


def test_deleted_instance_comes_back_and_foreign_image_edit_is_reverted(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 3))
    _ready_set(kube, namespace, "web")
    victim = next(p for p in pods_of(kube, namespace, "web") if p["metadata"]["name"] == "web-1")
    kube.delete(core_path("pods", namespace, "web-1"))
    wait_for(
        lambda: any(
            p["metadata"]["name"] == "web-1"
            and p["metadata"]["uid"] != victim["metadata"]["uid"]
            and is_ready(p)
            for p in pods_of(kube, namespace, "web")
        ),
        TIMEOUT,
        "web-1 to come back",
    )
    kube.patch(
        core_path("pods", namespace, "web-2"),
        {"spec": {"containers": [{"name": "os", "image": "registry.example/intruder:latest"}]}},
        "application/strategic-merge-patch+json",
    )
    wait_for(
        lambda: (
            kube.get(core_path("pods", namespace, "web-2"))["spec"]["containers"][0]["image"] == f"{IMAGE}:v1"
        ),
        TIMEOUT,
        "the foreign image edit to be reverted",
    )
    # The Event follows the repair (on a real API server a moment later).
    wait_for(lambda: _events(kube, namespace, "DriftReverted"), TIMEOUT, "a DriftReverted Event")


def test_missing_policy_is_reported_and_instances_are_kept(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 3))
    before = _ready_set(kube, namespace, "web")
    uids = {p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {
            "spec": {
                "upgradePolicyRef": {"name": "nowhere"},
                "template": {"spec": {"containers": [{"name": "os", "image": f"{IMAGE}:v9"}]}},
            }
        },
        MERGE_PATCH,
    )
    stalled = wait_for(
        lambda: (
            (c := condition(kube.get(fleet_path("scalesets", namespace, "web")), "Stalled"))
            and c["status"] == "True"
            and c
        ),
        TIMEOUT,
        "Stalled",
    )
    assert stalled["reason"] == "PolicyNotFound"
    assert '"nowhere"' in stalled["message"]
    assert {p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")} == uids
    assert all(p["spec"]["containers"][0]["image"] == f"{IMAGE}:v1" for p in pods_of(kube, namespace, "web"))
    assert (
        before["status"]["currentRevision"]
        == kube.get(fleet_path("scalesets", namespace, "web"))["status"]["currentRevision"]
    )


def test_single_instance_scaleset_warns_it_cannot_upgrade_without_downtime(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, scaleset_body("solo", 1))
    scaleset = _ready_set(kube, namespace, "solo")
    warning = condition(scaleset, "DowntimeOnUpgrade")
    assert warning is not None and warning["status"] == "True" and warning["reason"] == "SingleInstance"


def test_revisions_are_recorded_as_controller_revisions(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 2))
    first = _ready_set(kube, namespace, "web")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    second = wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] != first["status"]["currentRevision"]
            and s
        ),
        TIMEOUT,
        "second revision",
    )
    stored = kube.list(group_path("apps", "v1", "controllerrevisions", namespace))
    names = {r["metadata"]["name"] for r in stored}
    assert {first["status"]["currentRevision"], second["status"]["currentRevision"]} <= names


def test_old_revisions_beyond_the_history_limit_are_pruned(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 2, revisionHistoryLimit=1))
    seen = [_ready_set(kube, namespace, "web")["status"]["currentRevision"]]
    for tag in ("v2", "v3", "v4"):
        set_image(kube, namespace, "web", f"{IMAGE}:{tag}")
        done = wait_for(
            lambda: (
                (s := scaleset_ready(kube, namespace, "web"))
                and s["status"]["currentRevision"] not in seen
                and s
            ),
            TIMEOUT,
            f"rollout to {tag}",
        )
        seen.append(done["status"]["currentRevision"])
    stored = {
        r["metadata"]["name"] for r in kube.list(group_path("apps", "v1", "controllerrevisions", namespace))
    }
    # The current revision and one old one (the limit); the two oldest are gone.
    assert stored == {seen[-1], seen[-2]}


def test_template_change_mid_rollout_retargets_without_extra_downtime(kube: Kube, namespace: str) -> None:
    create(kube, namespace, policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "1s"}))
    create(kube, namespace, scaleset_body("web", 10, policy="slow"))
    _ready_set(kube, namespace, "web")
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2-ready-after-20s")
        wait_for(
            lambda: (
                sum(
                    1
                    for p in pods_of(kube, namespace, "web")
                    if p["spec"]["containers"][0]["image"].endswith("v2-ready-after-20s")
                )
                >= 3
            ),
            TIMEOUT,
            "the first upgrade under way",
        )
        set_image(kube, namespace, "web", f"{IMAGE}:v3")
        done = wait_for(
            lambda: (
                (s := scaleset_ready(kube, namespace, "web"))
                and all(
                    p["spec"]["containers"][0]["image"] == f"{IMAGE}:v3"
                    for p in pods_of(kube, namespace, "web")
                )
                and s
            ),
            TIMEOUT,
            "every instance on the newest template",
        )
    assert sampler.max_unavailable(10) <= 2, "a re-target took more than one batch down"
    assert _events(kube, namespace, "UpgradeRetargeted")
    history = done["status"]["upgrade"]["history"]
    assert len(history) == 1 and history[0]["result"] == "Completed", "one upgrade, re-targeted, not two"
    assert history[0]["toRevision"] == done["status"]["currentRevision"]
