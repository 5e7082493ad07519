"""Guest patching on a live API: something a user enables, and then a hotpatch reaches every instance.

The UpgradePolicy's automaticGuestPatching is the VM API's patchMode AutomaticByPlatform: off by
default, when ImageCatalog patches are only assessed (status.pendingUpdates lists them) and never
touch an instance; enableHotpatching is its own opt-in. Off-peak hours are 22:00 to 06:00 in the
ScaleSet's spec.timeZone, so each test picks a fixed-offset zone where it is night (or day) now.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from scaleset_operator.control.kube import Kube, fleet_path
from scaleset_operator.identity import LABEL_REVISION
from tests.integration.helpers import pods_of, scaleset_ready, wait_for
from tests.integration.test_automatic_updates import (
    PATCHING,
    RECENT,
    TIMEOUT,
    publish,
    repository,
    restarts,
    start,
    status_of,
    version,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["repository"]  # the fixture, imported for these tests

HOTPATCHES = "fleet.scaleset.dev/hotpatches"
SCHEDULED_EVENTS = "fleet.scaleset.dev/scheduled-events"


def zone_at(hour: int) -> str:
    """A fixed-offset IANA zone (Etc/GMT-N is UTC+N) whose wall clock shows `hour` o'clock now."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{'-' if offset >= 0 else '+'}{abs(offset)}"


def security_hotpatch(repository: str, patch_id: str = "HP-SEC") -> dict[str, Any]:
    return {
        "id": patch_id,
        "classification": "Security",
        "appliesTo": [repository],
        "hotpatch": True,
        "publishedAt": RECENT,
    }


def hotpatched(kube: Kube, namespace: str, patch_id: str = "HP-SEC") -> bool:
    found = pods_of(kube, namespace, "web")
    return bool(found) and all(
        (p["metadata"].get("annotations") or {}).get(HOTPATCHES) == patch_id for p in found
    )


def pending_patch(kube: Kube, namespace: str, patch_id: str = "HP-SEC") -> dict[str, Any] | None:
    pending = status_of(kube, namespace).get("pendingUpdates") or []
    return next((p for p in pending if p["kind"] == "Patch" and p["name"] == patch_id), None)


def pod_uids(kube: Kube, namespace: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}


def test_a_security_hotpatch_reaches_every_instance_off_peak_without_a_restart(
    kube: Kube, namespace: str, repository: str
) -> None:
    """As a user would: automatic OS and extension upgrades on, an extension, scheduled events on,
    off-peak hours in the instances' zone, guest patching and hotpatching enabled; a Security hotpatch
    is published. A hotpatch reboots nothing, so no scheduled event holds it back."""
    sidecar = f"{repository}-logs"
    publish(
        kube,
        repository,
        extensions=[{"name": "log-shipper", "repository": sidecar, "versions": [version("3.1.0")]}],
    )
    start(
        kube,
        namespace,
        repository,
        sidecar=f"{sidecar}:3.1.0",
        patching=PATCHING,
        timeZone=zone_at(0),
        scheduledEvents={"enabled": True},
    )
    uids = pod_uids(kube, namespace)
    before = {name: restarts(kube, namespace, name, "os") for name in uids}
    publish(kube, repository, patches=[security_hotpatch(repository)])
    wait_for(lambda: hotpatched(kube, namespace), TIMEOUT, "HP-SEC on every instance")
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    assert pod_uids(kube, namespace) == uids
    assert {name: restarts(kube, namespace, name, "os") for name in uids} == before
    # Nothing was announced: a hotpatch is no reboot, reimage or removal.
    assert all(
        not (p["metadata"].get("annotations") or {}).get(SCHEDULED_EVENTS)
        for p in pods_of(kube, namespace, "web")
    )
    status = status_of(kube, namespace)
    assert status["automaticUpdates"]["patches"]["hotpatchIds"] == ["HP-SEC"]
    assert pending_patch(kube, namespace) is None


def test_guest_patches_never_touch_a_scaleset_until_enabled_and_are_listed_meanwhile(
    kube: Kube, namespace: str, repository: str
) -> None:
    start(kube, namespace, repository, timeZone=zone_at(0))
    revision = status_of(kube, namespace)["currentRevision"]
    publish(kube, repository, patches=[security_hotpatch(repository)])
    listed = wait_for(lambda: pending_patch(kube, namespace), TIMEOUT, "HP-SEC listed as pending")
    assert listed["classification"] == "Security" and listed["version"] == "hotpatch"
    assert "automaticGuestPatching.enabled" in listed["waitingFor"]
    # Assessed, not installed: no revision, no annotation, nothing in status.automaticUpdates, whatever
    # passes follow (a catalog change wakes every ScaleSet).
    publish(kube, repository, version("0.9.0"))
    time.sleep(2)
    assert pending_patch(kube, namespace) is not None
    status = status_of(kube, namespace)
    assert status["updateRevision"] == status["currentRevision"] == revision
    assert "patches" not in (status.get("automaticUpdates") or {})
    assert not any(
        (p["metadata"].get("annotations") or {}).get(HOTPATCHES) for p in pods_of(kube, namespace, "web")
    )

    # Enabled: it goes in now (off-peak), without a restart.
    uids = pod_uids(kube, namespace)
    kube.patch(
        fleet_path("upgradepolicies", namespace, "auto"), {"spec": {"automaticGuestPatching": PATCHING}}
    )
    wait_for(lambda: hotpatched(kube, namespace), TIMEOUT, "HP-SEC on every instance once enabled")
    assert pod_uids(kube, namespace) == uids


def test_a_packaged_patch_stays_pending_and_says_why_while_its_roll_out_waits(
    kube: Kube, namespace: str, repository: str
) -> None:
    start(kube, namespace, repository, patching=PATCHING, timeZone=zone_at(12))
    publish(kube, repository, patches=[security_hotpatch(repository)])
    # Midday in the instances' zone: it waits for the night, and says so.
    waiting = wait_for(
        lambda: (p := pending_patch(kube, namespace)) and p.get("waitingFor") and p, TIMEOUT, "HP-SEC waiting"
    )
    assert "off-peak hours (22:00 to 06:00" in waiting["waitingFor"]
    assert not any(
        (p["metadata"].get("annotations") or {}).get(HOTPATCHES) for p in pods_of(kube, namespace, "web")
    )

    # Night falls (the zone moves), but the ScaleSet is paused: the package is made, its roll-out is
    # held, and status.pendingUpdates still says what waits and for what.
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"paused": True, "timeZone": zone_at(0)}})
    held = wait_for(
        lambda: (
            (p := pending_patch(kube, namespace))
            and "roll-out" in (p.get("waitingFor") or "")
            and "spec.paused" in p["waitingFor"]
            and p
        ),
        TIMEOUT,
        "HP-SEC pending in a held roll-out",
    )
    assert held["classification"] == "Security"
    update = status_of(kube, namespace)["updateRevision"]
    assert all(p["metadata"]["labels"][LABEL_REVISION] != update for p in pods_of(kube, namespace, "web"))

    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"paused": False}})
    wait_for(lambda: hotpatched(kube, namespace), TIMEOUT, "HP-SEC on every instance once resumed")
    wait_for(lambda: pending_patch(kube, namespace) is None, TIMEOUT, "HP-SEC no longer pending")
