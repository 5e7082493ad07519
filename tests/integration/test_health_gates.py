"""Health gates on a live API: start timeouts, unhealthy limits, pauses, surge, priorities and retention."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_REVISION, LABEL_SCALESET
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    create,
    is_ready,
    never_ready,
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


def _on_revision(kube: Kube, namespace: str, name: str) -> set[str]:
    revision = kube.get(fleet_path("scalesets", namespace, name))["status"]["updateRevision"]
    return {
        p["metadata"]["name"]
        for p in pods_of(kube, namespace, name)
        if p["metadata"]["labels"][LABEL_REVISION] == revision
    }


def test_instance_start_timeout_with_pause_stalls_and_a_newer_template_repairs(
    kube: Kube, namespace: str
) -> None:
    create(
        kube,
        namespace,
        policy_body("strict", healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Pause"}),
    )
    create(kube, namespace, scaleset_body("web", 10, policy="strict"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    set_image(kube, namespace, "web", f"{IMAGE}:v2-never-ready")
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "InstanceStartTimeout"
    # Only the first batch (upgrade domain 0: web-0 and web-5) was touched.
    assert _on_revision(kube, namespace, "web") == {"web-0", "web-5"}
    time.sleep(0.5)
    assert _on_revision(kube, namespace, "web") == {"web-0", "web-5"}, "a stalled rollout does not move on"

    set_image(kube, namespace, "web", f"{IMAGE}:v3")
    done = wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] == s["status"]["updateRevision"]
            and s
        ),
        TIMEOUT,
        "the newer template to complete the rollout",
    )
    assert all(p["spec"]["containers"][0]["image"] == f"{IMAGE}:v3" for p in pods_of(kube, namespace, "web"))
    assert not stalled(kube, namespace, "web")
    assert done["status"]["updatedReplicas"] == 10


def test_a_never_ready_image_stops_ten_instances_after_the_first_batch(kube: Kube, namespace: str) -> None:
    # The defaults but a short start timeout (Proceed): maxUnhealthyUpgradedInstancePercent is 20 % of
    # the instances upgraded, and after the first batch both of its two are unhealthy (100 %).
    create(
        kube,
        namespace,
        policy_body(
            "lenient", healthCheck={"instanceStartTimeout": "1s", "onInstanceStartTimeout": "Proceed"}
        ),
    )
    create(kube, namespace, scaleset_body("web", 10, policy="lenient"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2-never-ready")
        report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
        assert report["reason"] == "TooManyUnhealthyUpgraded"
        assert "2 of the 2 instances" in report["message"]
        assert _on_revision(kube, namespace, "web") == {"web-0", "web-5"}
        time.sleep(1.0)
    assert _on_revision(kube, namespace, "web") == {"web-0", "web-5"}, "a stopped rollout does not move on"
    assert sampler.max_unavailable(10) <= 2


def test_two_instances_down_leave_no_room_and_stop_the_rollout_before_a_batch(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    # maxUnhealthyInstancePercent 20 % of 10 is 2 at once: web-3 and web-7 use both.
    create(kube, namespace, scaleset_body("web", 10))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    never_ready(kube, namespace, kubelet, "web-3", "web-7")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
    assert report["reason"] == "TooManyUnhealthy"
    assert "maxUnhealthyInstancePercent (20 %)" in report["message"]
    assert "web-3, web-7" in report["message"]
    time.sleep(1.0)
    assert _on_revision(kube, namespace, "web") == set(), "no instance was taken down"
    # One of them recovers: room for one, so the next batch is web-0 alone.
    kubelet.set_behaviour(namespace, "web-3", None)
    first = wait_for(
        lambda: kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"].get("currentBatch"),
        TIMEOUT,
        "the first batch",
    )
    assert first["instances"] == ["web-0"]


def _batches_started(kube: Kube, namespace: str, name: str = "web") -> list[str]:
    """The instances of each batch started, in order, from the operator's BatchStarted Events."""
    events = [
        e
        for e in kube.list(core_path("events", namespace))
        if e["involvedObject"].get("name") == name and e["reason"] == "BatchStarted"
    ]
    events.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e["message"].split(" in upgrade domain")[0].removeprefix("Upgrading ") for e in events]


def test_one_instance_down_shrinks_each_batch_to_one(kube: Kube, namespace: str, kubelet: Any) -> None:
    # Two may be unhealthy at once (20 % of 10) and web-9 is one of them: batches of 2 shrink to 1.
    create(kube, namespace, scaleset_body("web", 10))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    never_ready(kube, namespace, kubelet, "web-9")
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2")
        wait_for(lambda: len(_batches_started(kube, namespace)) >= 4, TIMEOUT, "four batches")
    assert _batches_started(kube, namespace)[:4] == ["web-0", "web-5", "web-1", "web-6"]
    assert sampler.max_unavailable(10) <= 2, "web-9 and one instance of a batch, never more"


def test_pause_between_batches_spaces_them(kube: Kube, namespace: str) -> None:
    create(kube, namespace, policy_body("spaced", rollingUpgrade={"pauseTimeBetweenBatches": "1s"}))
    create(kube, namespace, scaleset_body("web", 3, policy="spaced", upgradeDomainCount=3))
    before = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2")
        after = wait_for(
            lambda: (
                (s := scaleset_ready(kube, namespace, "web"))
                and s["status"]["currentRevision"] != before["status"]["currentRevision"]
                and s
            ),
            TIMEOUT,
            "rollout",
        )
    first = sampler.first_seen_on(after["status"]["currentRevision"])
    moments = sorted(first.values())
    assert len(moments) == 3
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert min(gaps) >= 0.9, f"batches started {gaps} s apart, closer than the 1 s pause"


def test_max_surge_keeps_full_capacity(kube: Kube, namespace: str) -> None:
    create(kube, namespace, policy_body("surge", rollingUpgrade={"maxSurge": True}))
    create(kube, namespace, scaleset_body("web", 4, policy="surge", upgradeDomainCount=4, claims=True))
    before = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    ready_counts: list[int] = []
    done = False
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    deadline = time.monotonic() + TIMEOUT
    while not done and time.monotonic() < deadline:
        everything = kube.list(core_path("pods", namespace), f"{LABEL_SCALESET}=web")
        ready_counts.append(sum(1 for p in everything if is_ready(p)))
        state = scaleset_ready(kube, namespace, "web")
        done = bool(state and state["status"]["currentRevision"] != before["status"]["currentRevision"])
        time.sleep(0.02)
    assert done, "the surge rollout did not complete"
    assert min(ready_counts) >= 4, f"capacity fell to {min(ready_counts)} during a maxSurge rollout"
    wait_for(
        lambda: len(kube.list(core_path("pods", namespace), f"{LABEL_SCALESET}=web")) == 4,
        TIMEOUT,
        "surge pods removed",
    )


def test_prioritize_unhealthy_instances_upgrades_them_first(kube: Kube, namespace: str, kubelet: Any) -> None:
    create(kube, namespace, policy_body("fixfirst", rollingUpgrade={"prioritizeUnhealthyInstances": True}))
    create(kube, namespace, scaleset_body("web", 6, policy="fixfirst", upgradeDomainCount=3))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    never_ready(kube, namespace, kubelet, "web-5")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    first = wait_for(
        lambda: kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"].get("currentBatch"),
        TIMEOUT,
        "the first batch",
    )
    assert first["instances"] == ["web-5"]


def test_claims_follow_the_retention_policy(kube: Kube, namespace: str) -> None:
    body = scaleset_body("db", 3, claims=True)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenScaled": "Delete", "whenDeleted": "Retain"}
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "db"), TIMEOUT, "db Ready")

    def claims() -> list[str]:
        return sorted(
            c["metadata"]["name"] for c in kube.list(core_path("persistentvolumeclaims", namespace))
        )

    assert claims() == ["data-db-0", "data-db-1", "data-db-2"]
    kube.patch(fleet_path("scalesets", namespace, "db", "scale"), {"spec": {"replicas": 1}}, MERGE_PATCH)
    wait_for(lambda: claims() == ["data-db-0"], TIMEOUT, "claims of scaled-in instances to be deleted")
    kube.delete(fleet_path("scalesets", namespace, "db"))
    wait_for(lambda: not pods_of(kube, namespace, "db"), TIMEOUT, "pods to go with the ScaleSet")
    assert claims() == ["data-db-0"], "whenDeleted: Retain keeps the data disks"


def test_claims_go_with_the_scaleset_when_deleted_is_delete(kube: Kube, namespace: str) -> None:
    body = scaleset_body("db", 2, claims=True)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenScaled": "Retain", "whenDeleted": "Delete"}
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "db"), TIMEOUT, "db Ready")
    kube.patch(fleet_path("scalesets", namespace, "db", "scale"), {"spec": {"replicas": 1}}, MERGE_PATCH)
    wait_for(lambda: len(pods_of(kube, namespace, "db")) == 1, TIMEOUT, "scale-in to one")
    assert len(kube.list(core_path("persistentvolumeclaims", namespace))) == 2, (
        "whenScaled: Retain keeps them"
    )
    kube.delete(fleet_path("scalesets", namespace, "db"))
    wait_for(
        lambda: not kube.list(core_path("persistentvolumeclaims", namespace)),
        TIMEOUT,
        "claims deleted with the set",
    )


def test_emptydir_survives_in_place_update_but_not_reimage(kube: Kube, namespace: str, kubelet: Any) -> None:
    create(kube, namespace, policy_body("inplace"))
    create(kube, namespace, scaleset_body("web", 2, policy="inplace", claims=True, upgradeDomainCount=2))
    before = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    disks = kubelet.volume_identities(namespace, "web-0")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    middle = wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] != before["status"]["currentRevision"]
            and s
        ),
        TIMEOUT,
        "in-place rollout",
    )
    assert kubelet.volume_identities(namespace, "web-0") == disks, "in place keeps temp and data disks"
    kube.patch(
        fleet_path("upgradepolicies", namespace, "inplace"),
        {"spec": {"updateMethod": "Reimage"}},
        MERGE_PATCH,
    )
    set_image(kube, namespace, "web", f"{IMAGE}:v3")
    wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] != middle["status"]["currentRevision"]
        ),
        TIMEOUT,
        "reimage rollout",
    )
    after = kubelet.volume_identities(namespace, "web-0")
    assert after["data"] == disks["data"], "a reimage keeps the data disk"
    assert after["scratch"] != disks["scratch"], "a reimage loses the temp disk"


# --------------------------------------------------------------------------- Automatic mode and automatic work


def _catalog(kube: Kube, repository: str, *versions: str) -> None:
    """The ImageCatalog of `repository` (named after it), publishing `versions` thirty days ago."""
    name = repository.rsplit("/", 1)[-1]
    published = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ImageCatalog",
        "metadata": {"name": name},
        "spec": {
            "images": [
                {
                    "repository": repository,
                    "versions": [{"version": v, "publishedAt": published} for v in versions],
                }
            ]
        },
    }
    existing = kube.get_or_none(fleet_path("imagecatalogs", name=name))
    if existing is None:
        kube.create(fleet_path("imagecatalogs"), body)
    else:
        kube.patch(fleet_path("imagecatalogs", name=name), {"spec": body["spec"]})


def _status(kube: Kube, namespace: str, name: str = "web") -> dict[str, Any]:
    status: dict[str, Any] = kube.get(fleet_path("scalesets", namespace, name)).get("status") or {}
    return status


def _all_ready_on(kube: Kube, namespace: str, tag: str) -> bool:
    pods = pods_of(kube, namespace, "web")
    return len(pods) == 10 and all(
        p["spec"]["containers"][0]["image"].endswith(tag) and is_ready(p) for p in pods
    )


def test_automatic_mode_rolls_automatic_os_images_in_batches_and_a_bad_one_back(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    # Automatic mode (all at once) is for the user's template changes; an OS image the operator picks
    # from the catalog goes as the scale set's orchestrator takes it: at most 20 % at a time.
    repository = f"registry.example/auto-{uuid.uuid4().hex[:8]}"
    kubelet.script_image(f"{repository}:1.2.0", "never-ready")
    create(
        kube,
        namespace,
        policy_body(
            "auto",
            mode="Automatic",
            healthCheck={"instanceStartTimeout": "2s"},
            automaticOSUpgrade={"enabled": True},
        ),
    )
    _catalog(kube, repository, "1.0.0")
    try:
        create(kube, namespace, scaleset_body("web", 10, image=f"{repository}:1.0.0", policy="auto"))
        wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
        with PodSampler(kube, namespace, "web") as sampler:
            _catalog(kube, repository, "1.0.0", "1.1.0")
            wait_for(lambda: _all_ready_on(kube, namespace, ":1.1.0"), TIMEOUT, "every instance on 1.1.0")
        assert sampler.max_unavailable(10) <= 2, "batches of 20 %, not all at once"
        moved = sampler.first_seen_on(_status(kube, namespace)["updateRevision"])
        assert max(moved["web-0"], moved["web-5"]) < min(
            t for n, t in moved.items() if n not in ("web-0", "web-5")
        )

        with PodSampler(kube, namespace, "web") as sampler:
            _catalog(kube, repository, "1.0.0", "1.1.0", "1.2.0")
            wait_for(
                lambda: _status(kube, namespace).get("automaticUpdates", {}).get("rolledBack"),
                TIMEOUT,
                "1.2.0 rolled back",
            )
            upgrade = wait_for(
                lambda: (
                    (u := _status(kube, namespace)["upgrade"])["history"][-1]["result"] == "RolledBack" and u
                ),
                TIMEOUT,
                "the rollback in the history",
            )
            wait_for(
                lambda: _all_ready_on(kube, namespace, ":1.1.0"), TIMEOUT, "every instance Ready on 1.1.0"
            )
        bad = upgrade["history"][-1]["toRevision"]
        on_bad = max(sum(1 for rev, _, _ in sample.pods.values() if rev == bad) for sample in sampler.samples)
        assert on_bad == 2, f"{on_bad} instances reached the bad image; the first batch holds 2"

        # The user's own template change in Automatic mode goes to every instance at once.
        body = kube.get(fleet_path("scalesets", namespace, "web"))
        labels = {**body["spec"]["template"]["metadata"]["labels"], "tier": "front"}
        kube.patch(
            fleet_path("scalesets", namespace, "web"),
            {"spec": {"template": {"metadata": {"labels": labels}}}},
        )
        batch = wait_for(
            lambda: (
                (
                    b := kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"].get(
                        "currentBatch"
                    )
                )
                and len(b["instances"]) == 10
                and b
            ),
            TIMEOUT,
            "one batch of every instance",
        )
        assert batch.get("upgradeDomain") is None
    finally:
        kube.delete(fleet_path("imagecatalogs", name=repository.rsplit("/", 1)[-1]))
