"""Automatic updates on a live API: catalogs that publish while the operator runs.

ImageCatalogs are cluster-scoped and apply to every ScaleSet whose images they list, so each test
publishes a repository of its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from scaleset_operator.cli.main import app
from scaleset_operator.control.kube import Kube, core_path, fleet_path
from tests.integration.helpers import (
    PodSampler,
    create,
    maintenance_configuration,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60
PAST = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
# After the OS images of PAST (a patch for an image is published after it), before now.
RECENT = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
FUTURE = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def repository(kube: Kube) -> Iterator[str]:
    """An image repository of this test's own, and its ImageCatalog (removed at the end)."""
    name = f"auto-{uuid.uuid4().hex[:8]}"
    kube.create(
        fleet_path("imagecatalogs"),
        {
            "apiVersion": "fleet.scaleset.dev/v1alpha1",
            "kind": "ImageCatalog",
            "metadata": {"name": name},
            "spec": {"images": [{"repository": f"registry.example/{name}", "versions": [version("1.0.0")]}]},
        },
    )
    yield f"registry.example/{name}"
    kube.delete(fleet_path("imagecatalogs", name=name))


def version(tag: str, published: str = PAST) -> dict[str, str]:
    return {"version": tag, "publishedAt": published}


def catalog_name(repository: str) -> str:
    return repository.rsplit("/", 1)[-1]


def publish(kube: Kube, repository: str, *versions: dict[str, str], **spec: Any) -> None:
    """Add versions of the repository's OS image (and other catalog entries) to its catalog."""
    path = fleet_path("imagecatalogs", name=catalog_name(repository))
    current = kube.get(path)["spec"]
    images = current["images"][0]["versions"] + list(versions)
    kube.patch(path, {"spec": {**spec, "images": [{"repository": repository, "versions": images}]}})


# Guest patches are installed only when the policy asks for them, hotpatches without a restart only
# with enableHotpatching; the tests that publish patches ask for both unless they say otherwise.
PATCHING = {"enabled": True, "enableHotpatching": True}


def automatic_policy(
    health: dict[str, Any] | None = None, patching: dict[str, Any] | None = None, **rolling: Any
) -> dict[str, Any]:
    return policy_body(
        "auto",
        rollingUpgrade={"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50, **rolling},
        healthCheck=health or {},
        automaticOSUpgrade={"enabled": True},
        automaticExtensionUpgrade={"enabled": True},
        automaticGuestPatching=patching or {},
    )


def status_of(kube: Kube, namespace: str, name: str = "web") -> dict[str, Any]:
    status: dict[str, Any] = kube.get(fleet_path("scalesets", namespace, name)).get("status") or {}
    return status


def images(kube: Kube, namespace: str, container: str = "os") -> dict[str, str]:
    return {
        p["metadata"]["name"]: next(
            (c["image"] for c in p["spec"]["containers"] if c["name"] == container), ""
        )
        for p in pods_of(kube, namespace, "web")
    }


def all_run(kube: Kube, namespace: str, image: str, container: str = "os") -> bool:
    found = images(kube, namespace, container)
    return bool(found) and set(found.values()) == {image} and bool(scaleset_ready(kube, namespace, "web"))


def start(
    kube: Kube,
    namespace: str,
    repository: str,
    replicas: int = 4,
    sidecar: str | None = None,
    patching: dict[str, Any] | None = None,
    **spec: Any,
) -> None:
    """A ScaleSet `web` on `repository`:1.0.0 (and the extension log-shipper in a container `logs`)."""
    create(kube, namespace, automatic_policy(patching=patching))
    body = scaleset_body("web", replicas, image=f"{repository}:1.0.0", policy="auto", upgrade_domain_count=2)
    body["metadata"]["labels"] = {"fleet": catalog_name(repository)}
    if sidecar:
        body["spec"]["template"]["spec"]["containers"].append({"name": "logs", "image": sidecar})
        body["spec"]["extensions"] = [
            {"name": "log-shipper", "container": "logs", "enableAutomaticUpgrade": True}
        ]
    body["spec"].update(spec)
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")


def test_a_published_os_image_rolls_out_by_itself_and_survives_a_reapplied_manifest(
    kube: Kube, namespace: str, repository: str
) -> None:
    start(kube, namespace, repository)
    before = status_of(kube, namespace)["updateRevision"]
    with PodSampler(kube, namespace, "web") as sampler:
        # Newest by semantic version, published by now: not the future one, the older one, nor `latest`.
        publish(
            kube,
            repository,
            version("1.1.0"),
            version("0.9.0"),
            version("latest"),
            version("2.0.0", published=FUTURE),
        )
        wait_for(lambda: all_run(kube, namespace, f"{repository}:1.1.0"), TIMEOUT, "every instance on 1.1.0")
    status = status_of(kube, namespace)
    chosen = status["automaticUpdates"]["osImage"]
    assert (chosen["version"], chosen["reason"]) == ("1.1.0", "AutomaticOSUpgrade")
    assert status["updateRevision"] != before
    scaleset = kube.get(fleet_path("scalesets", namespace, "web"))
    assert scaleset["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}:1.0.0"
    # Upgrade domain by upgrade domain: no instance of domain 1 moved before all of domain 0 had.
    first_moved = sampler.first_seen_on(status["updateRevision"])
    domain_0 = [first_moved[f"web-{o}"] for o in (0, 2)]
    domain_1 = [first_moved[f"web-{o}"] for o in (1, 3)]
    assert max(domain_0) <= min(domain_1)
    assert sampler.max_unavailable(4) <= 2
    # Each instance says when it was last updated, and with what.
    for pod in pods_of(kube, namespace, "web"):
        annotations = pod["metadata"]["annotations"]
        assert (
            json.loads(annotations["fleet.scaleset.dev/automatic-updates"])["osImage"]["version"] == "1.1.0"
        )
        assert annotations["fleet.scaleset.dev/updated-at"] > chosen["since"][:19]

    # GitOps: applying the same manifest again, and a change of something else, keep the OS image.
    revision = status["updateRevision"]
    kube.patch(
        fleet_path("scalesets", namespace, "web"), {"spec": {"template": scaleset["spec"]["template"]}}
    )
    labelled = {**scaleset["spec"]["template"]["metadata"]["labels"], "tier": "front"}
    kube.patch(
        fleet_path("scalesets", namespace, "web"), {"spec": {"template": {"metadata": {"labels": labelled}}}}
    )
    wait_for(
        lambda: (
            status_of(kube, namespace)["updateRevision"] != revision
            and all_run(kube, namespace, f"{repository}:1.1.0")
        ),
        TIMEOUT,
        "the label change rolled out on 1.1.0",
    )
    assert status_of(kube, namespace)["automaticUpdates"]["osImage"]["version"] == "1.1.0"


def test_a_window_gates_the_os_image_and_a_closing_window_holds_the_next_batch(
    kube: Kube, namespace: str, repository: str, configurations: list[str]
) -> None:
    tag = catalog_name(repository)
    closed = datetime.now(UTC) + timedelta(days=2)
    window = maintenance_configuration(tag, "OSImage", {"fleet": tag}, closed)
    kube.create(fleet_path("maintenanceconfigurations"), window)
    configurations.append(tag)
    start(kube, namespace, repository)
    kube.patch(
        fleet_path("upgradepolicies", namespace, "auto"),
        {"spec": {"rollingUpgrade": {"pauseTimeBetweenBatches": "3s"}}},
    )
    publish(kube, repository, version("1.1.0"))

    def waiting() -> dict[str, Any] | None:
        pending = status_of(kube, namespace).get("pendingUpdates") or []
        return next((p for p in pending if p.get("version") == "1.1.0" and p.get("waitingFor")), None)

    update = wait_for(waiting, TIMEOUT, "1.1.0 pending, waiting for the window")
    assert update["kind"] == "OSImage" and "MaintenanceConfiguration" in update["waitingFor"]
    assert set(images(kube, namespace).values()) == {f"{repository}:1.0.0"}

    # The window opens: the first batch starts; it closes during the pause: the next batch waits.
    now = datetime.now(UTC) - timedelta(hours=1)
    path = fleet_path("maintenanceconfigurations", name=tag)
    kube.patch(path, {"spec": {"window": {"startDateTime": now.strftime("%Y-%m-%d %H:%M")}}})
    wait_for(
        lambda: (status_of(kube, namespace).get("upgrade") or {}).get("currentBatch"),
        TIMEOUT,
        "a first batch",
    )
    kube.patch(path, {"spec": {"window": {"startDateTime": closed.strftime("%Y-%m-%d %H:%M")}}})
    upgrade = wait_for(
        lambda: (
            (u := status_of(kube, namespace).get("upgrade") or {}).get("phase")
            == "WaitingForMaintenanceWindow"
            and u
        ),
        TIMEOUT,
        "phase WaitingForMaintenanceWindow",
    )
    assert upgrade["reason"] == "WaitingForMaintenanceWindow"
    assert closed.strftime("%Y-%m-%d") in upgrade["message"]
    moved = [name for name, image in images(kube, namespace).items() if image.endswith(":1.1.0")]
    assert 0 < len(moved) < 4

    kube.patch(path, {"spec": {"window": {"startDateTime": now.strftime("%Y-%m-%d %H:%M")}}})
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.1.0"), TIMEOUT, "the rest once it reopened")


def test_a_failing_version_is_rolled_back_and_the_next_one_is_tried(
    kube: Kube, namespace: str, repository: str, kubelet: Any
) -> None:
    kubelet.script_image(f"{repository}:1.1.0", "never-ready")
    create(
        kube,
        namespace,
        automatic_policy({"instanceStartTimeout": "3s"}, maxUnhealthyUpgradedInstancePercent=20),
    )
    body = scaleset_body("web", 4, image=f"{repository}:1.0.0", policy="auto", upgrade_domain_count=2)
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    publish(kube, repository, version("1.1.0"))
    rolled_back = wait_for(
        lambda: (status_of(kube, namespace).get("automaticUpdates") or {}).get("rolledBack"),
        TIMEOUT,
        "1.1.0 rolled back",
    )
    assert [(item["version"]) for item in rolled_back] == ["1.1.0"]
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.0.0"), TIMEOUT, "every instance back on 1.0.0")
    history = status_of(kube, namespace)["upgrade"]["history"]
    assert history[-1]["result"] == "RolledBack"
    assert "osImage" not in status_of(kube, namespace)["automaticUpdates"]

    publish(kube, repository, version("1.2.0"))
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.2.0"), TIMEOUT, "1.2.0, skipping 1.1.0")


def test_an_extension_upgrade_goes_a_fifth_at_a_time_and_never_restarts_the_app(
    kube: Kube, namespace: str, repository: str
) -> None:
    sidecar = f"{repository}-logs"
    publish(
        kube,
        repository,
        extensions=[{"name": "log-shipper", "repository": sidecar, "versions": [version("3.1.0")]}],
    )
    start(kube, namespace, repository, replicas=5, extensions=[])
    template = kube.get(fleet_path("scalesets", namespace, "web"))["spec"]["template"]
    template["spec"]["containers"].append({"name": "logs", "image": f"{sidecar}:3.1.0"})
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {
            "spec": {
                "template": template,
                "extensions": [{"name": "log-shipper", "container": "logs", "enableAutomaticUpgrade": True}],
            }
        },
    )
    wait_for(lambda: all_run(kube, namespace, f"{sidecar}:3.1.0", "logs"), TIMEOUT, "the sidecar everywhere")
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}
    app_restarts = {name: restarts(kube, namespace, name, "os") for name in uids}
    batches: list[list[str]] = []

    def record_batch() -> bool:
        batch = (status_of(kube, namespace).get("upgrade") or {}).get("currentBatch") or {}
        if batch.get("instances") and batch["instances"] not in batches:
            batches.append(batch["instances"])
        return all_run(kube, namespace, f"{sidecar}:3.2.0", "logs")

    publish(
        kube,
        repository,
        extensions=[
            {"name": "log-shipper", "repository": sidecar, "versions": [version("3.1.0"), version("3.2.0")]}
        ],
    )
    wait_for(record_batch, TIMEOUT, "the sidecar on 3.2.0 everywhere", interval=0.02)
    assert batches and all(len(batch) == 1 for batch in batches), batches
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}
    assert after == uids
    assert {name: restarts(kube, namespace, name, "os") for name in uids} == app_restarts
    assert set(images(kube, namespace).values()) == {f"{repository}:1.0.0"}


def restarts(kube: Kube, namespace: str, pod: str, container: str) -> tuple[int, str | None]:
    from scaleset_operator.control.kube import core_path

    statuses = (kube.get(core_path("pods", namespace, pod)).get("status") or {}).get(
        "containerStatuses"
    ) or []
    found = next(s for s in statuses if s["name"] == container)
    return found.get("restartCount", 0), found.get("containerID")


def test_a_hotpatch_restarts_nothing_and_is_recorded_on_each_pod(
    kube: Kube, namespace: str, repository: str, configurations: list[str]
) -> None:
    open_patch_window(kube, repository, configurations)
    start(kube, namespace, repository, patching=PATCHING)
    pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}
    before = {name: restarts(kube, namespace, name, "os") for name in pods}
    patch = {"id": "HP-1", "classification": "Critical", "appliesTo": [repository], "hotpatch": True}
    publish(kube, repository, patches=[{**patch, "publishedAt": RECENT}])

    def patched() -> bool:
        found = pods_of(kube, namespace, "web")
        return bool(found) and all(
            (p["metadata"].get("annotations") or {}).get("fleet.scaleset.dev/hotpatches") == "HP-1"
            for p in found
        )

    wait_for(patched, TIMEOUT, "HP-1 recorded on every instance")
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")} == pods
    assert {name: restarts(kube, namespace, name, "os") for name in pods} == before
    assert status_of(kube, namespace)["automaticUpdates"]["patches"]["hotpatchIds"] == ["HP-1"]


def test_scaleset_upgrade_moves_the_os_image_by_hand(
    kube: Kube, namespace: str, repository: str, kubeconfig: str
) -> None:
    create(kube, namespace, policy_body("manual-os"))
    create(kube, namespace, scaleset_body("web", 2, image=f"{repository}:1.0.0", policy="manual-os"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    publish(kube, repository, version("1.1.0"), version("1.2.0"))
    runner = CliRunner()
    args = ["-n", namespace, "--kubeconfig", kubeconfig, "--timeout", "20"]
    missing = runner.invoke(app, ["upgrade", "web", "--to", "9.9.9", *args])
    assert missing.exit_code == 1, missing.output
    assert f"no ImageCatalog has published {repository}:9.9.9" in missing.output
    accepted = runner.invoke(app, ["upgrade", "web", "--to", "1.1.0", *args])
    assert accepted.exit_code == 0, accepted.output
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.1.0"), TIMEOUT, "1.1.0 by hand")
    chosen = status_of(kube, namespace)["automaticUpdates"]["osImage"]
    assert (chosen["version"], chosen["reason"]) == ("1.1.0", "ManualUpgrade")
    # Automatic upgrades are off in this policy: 1.2.0 waits until asked for.
    assert set(images(kube, namespace).values()) == {f"{repository}:1.1.0"}
    newest = runner.invoke(app, ["upgrade", "web", *args])
    assert newest.exit_code == 0, newest.output
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.2.0"), TIMEOUT, "the newest by hand")


def test_an_os_image_and_an_extension_published_together_update_each_instance_once(
    kube: Kube, namespace: str, repository: str
) -> None:
    sidecar = f"{repository}-logs"
    shipper = {"name": "log-shipper", "repository": sidecar, "versions": [version("3.1.0")]}
    publish(kube, repository, extensions=[shipper])
    start(kube, namespace, repository, sidecar=f"{sidecar}:3.1.0")
    before = status_of(kube, namespace)["updateRevision"]
    with PodSampler(kube, namespace, "web") as sampler:
        publish(
            kube,
            repository,
            version("1.1.0"),
            extensions=[{**shipper, "versions": [version("3.1.0"), version("3.2.0")]}],
        )
        wait_for(
            lambda: (
                all_run(kube, namespace, f"{repository}:1.1.0")
                and all_run(kube, namespace, f"{sidecar}:3.2.0", "logs")
            ),
            TIMEOUT,
            "both updates everywhere",
        )
    after = status_of(kube, namespace)["updateRevision"]
    seen: dict[str, set[str | None]] = {}
    for sample in sampler.samples:
        for name, (revision, _ready, _uid) in sample.pods.items():
            seen.setdefault(name, set()).add(revision)
    assert seen and all(revisions == {before, after} for revisions in seen.values()), seen
    assert {name: restarts(kube, namespace, name, "os")[0] for name in seen} == dict.fromkeys(seen, 1)
    history = status_of(kube, namespace)["upgrade"]["history"]
    assert (history[-1]["fromRevision"], history[-1]["toRevision"]) == (before, after)


def test_an_update_pending_longer_than_max_deferral_goes_outside_its_window(
    kube: Kube, namespace: str, repository: str, configurations: list[str]
) -> None:
    tag = catalog_name(repository)
    later = datetime.now(UTC) + timedelta(days=2)
    kube.create(
        fleet_path("maintenanceconfigurations"),
        maintenance_configuration(tag, "OSImage", {"fleet": tag}, later, maxDeferral="7d"),
    )
    configurations.append(tag)
    start(kube, namespace, repository)
    publish(kube, repository, version("1.1.0"))  # published 30 days ago: past the 7 days
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.1.0"), TIMEOUT, "1.1.0 despite the window")
    events = kube.list(core_path("events", namespace))
    warnings = [e for e in events if e.get("reason") == "MaxDeferralExceeded" and e.get("type") == "Warning"]
    assert warnings and "7" in warnings[0]["message"], [e.get("reason") for e in events]


def open_patch_window(kube: Kube, repository: str, configurations: list[str]) -> str:
    """An InGuestPatch window open now for the ScaleSets labelled fleet=<repository's name>; that name."""
    tag = catalog_name(repository)
    opened = datetime.now(UTC) - timedelta(hours=1)
    kube.create(
        fleet_path("maintenanceconfigurations"),
        maintenance_configuration(tag, "InGuestPatch", {"fleet": tag}, opened),
    )
    configurations.append(tag)
    return tag


def test_a_patched_image_that_leaves_instances_unhealthy_is_rolled_back_and_not_applied_again(
    kube: Kube, namespace: str, repository: str, configurations: list[str], kubelet: Any
) -> None:
    tag = open_patch_window(kube, repository, configurations)
    kubelet.script_image(f"{repository}:1.0.0-kb1", "never-ready")
    create(
        kube,
        namespace,
        automatic_policy({"instanceStartTimeout": "3s"}, PATCHING, maxUnhealthyUpgradedInstancePercent=20),
    )
    body = scaleset_body("web", 4, image=f"{repository}:1.0.0", policy="auto", upgrade_domain_count=2)
    body["metadata"]["labels"] = {"fleet": tag}
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    patch = {"id": "KB1", "classification": "Security", "appliesTo": [repository], "rebootRequired": True}
    publish(kube, repository, patches=[{**patch, "image": f"{repository}:1.0.0-kb1", "publishedAt": RECENT}])
    failed = wait_for(
        lambda: (status_of(kube, namespace).get("automaticUpdates") or {}).get("failedPatchIds"),
        TIMEOUT,
        "KB1 rolled back",
    )
    assert failed == ["KB1"]
    wait_for(lambda: all_run(kube, namespace, f"{repository}:1.0.0"), TIMEOUT, "every instance back on 1.0.0")
    assert status_of(kube, namespace)["upgrade"]["history"][-1]["result"] == "RolledBack"
    # Not applied again: it is held, not pending, and no upgrade follows the rollback.
    status = status_of(kube, namespace)
    assert "KB1" not in [update["name"] for update in status.get("pendingUpdates") or []]
    assert status["updateRevision"] == status["currentRevision"]
    assert status["upgrade"]["phase"] == "Failed" and not status["upgrade"].get("locked")


def test_a_patch_that_requires_a_reboot_restarts_each_instance_once(
    kube: Kube, namespace: str, repository: str, configurations: list[str]
) -> None:
    open_patch_window(kube, repository, configurations)
    start(kube, namespace, repository, patching=PATCHING)
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}
    old = status_of(kube, namespace)["currentRevision"]
    patch = {"id": "KB2", "classification": "Critical", "appliesTo": [repository], "hotpatch": True}
    with PodSampler(kube, namespace, "web") as sampler:
        publish(kube, repository, patches=[{**patch, "rebootRequired": True, "publishedAt": RECENT}])
        wait_for(
            lambda: (
                (s := status_of(kube, namespace))["currentRevision"] not in (old, None)
                and s["currentRevision"] == s["updateRevision"]
                and scaleset_ready(kube, namespace, "web")
            ),
            TIMEOUT,
            "every instance restarted for KB2",
        )
    assert status_of(kube, namespace)["automaticUpdates"]["patches"]["patchIds"] == ["KB2"]
    uids: dict[str, set[str | None]] = {}
    for sample in sampler.samples:
        for name, (_revision, _ready, uid) in sample.pods.items():
            uids.setdefault(name, set()).add(uid)
    # Each instance restarted once (a new pod, same name): its old uid and one new one.
    assert set(uids) == set(before) and all(
        len(seen) == 2 and before[n] in seen for n, seen in uids.items()
    ), uids
    assert set(images(kube, namespace).values()) == {f"{repository}:1.0.0"}
