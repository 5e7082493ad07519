"""`scaleset status`: what it shows of automatic updates, pending updates and windows, in text and JSON."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from scaleset_operator.cli.fleet import render_status, status_json

SCALESET: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"replicas": 4},
    "status": {
        "readyReplicas": 4,
        "updatedReplicas": 2,
        "currentRevision": "web-1",
        "updateRevision": "web-2",
        "upgrade": {
            "locked": True,
            "phase": "WaitingForMaintenanceWindow",
            "reason": "WaitingForMaintenanceWindow",
            "message": "the OSImage window opens at 2026-12-05T22:00:00+01:00",
            "fromRevision": "web-1",
            "toRevision": "web-2",
            "currentUpgradeDomain": 0,
            "currentBatch": {"instances": ["web-0", "web-2"], "upgradeDomain": 0},
        },
        "upgradeDomains": [
            {"index": 0, "instances": ["web-0", "web-2"], "revision": "web-2", "updated": 2, "healthy": 2},
            {"index": 1, "instances": ["web-1", "web-3"], "revision": "web-1", "updated": 0, "healthy": 2},
        ],
        "automaticUpdates": {
            "osImage": {
                "container": "os",
                "repository": "docker.io/library/nginx",
                "version": "1.27.3",
                "image": "nginx:1.27.3",
                "reason": "AutomaticOSUpgrade",
            },
            "patches": {"container": "os", "baseImage": "nginx:1.27.3", "hotpatchIds": ["HP-1"]},
            "rolledBack": [{"repository": "docker.io/library/nginx", "version": "1.27.2"}],
        },
        "pendingUpdates": [
            {
                "kind": "Extension",
                "name": "log-shipper",
                "version": "3.2",
                "since": "2026-11-12T00:00:00Z",
                "scope": "Extension",
                "waitingFor": "the Extension window of MaintenanceConfiguration nightly opens at 22:00",
            }
        ],
        "maintenance": {
            "configurations": ["nightly"],
            "nextWindows": [
                {"scope": "OSImage", "start": "2026-12-05T22:00:00+01:00", "end": "2026-12-06T02:00:00+01:00"}
            ],
        },
    },
}


def rendered(scaleset: dict[str, Any]) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render_status(scaleset))
    return out.getvalue()


def test_the_table_shows_the_chosen_images_the_pending_updates_and_the_next_window() -> None:
    text = rendered(SCALESET)
    assert "phase WaitingForMaintenanceWindow" in text
    assert "os runs nginx:1.27.3 (AutomaticOSUpgrade)" in text
    assert "Guest patches applied: HP-1" in text
    assert "Rolled back, not tried again: nginx:1.27.2" in text
    assert "Pending updates" in text and "log-shipper" in text and "MaintenanceConfiguration nightly" in text
    assert "OSImage window: 2026-12-05T22:00:00+01:00 to 2026-12-06T02:00:00+01:00" in text


def test_a_scaleset_with_nothing_automatic_shows_no_update_lines() -> None:
    plain = {
        **SCALESET,
        "status": {k: v for k, v in SCALESET["status"].items() if k in ("upgrade", "upgradeDomains")},
    }
    text = rendered(plain)
    assert "Pending updates" not in text and " runs " not in text and "window:" not in text


def test_json_holds_the_same_data() -> None:
    data = status_json(SCALESET)
    assert data["phase"] == "WaitingForMaintenanceWindow"
    assert data["pendingUpdates"][0]["waitingFor"].startswith("the Extension window")
    assert data["automaticUpdates"]["osImage"]["version"] == "1.27.3"
    assert data["nextWindows"] == SCALESET["status"]["maintenance"]["nextWindows"]
    assert [d["revision"] for d in data["upgradeDomains"]] == ["web-2", "web-1"]
    assert data["currentBatch"]["instances"] == ["web-0", "web-2"]


def test_a_staged_upgrade_waiting_for_its_swap_shows_no_batches_and_says_why() -> None:
    staged = {
        **SCALESET,
        "status": {
            **SCALESET["status"],
            "upgrade": {
                "locked": True,
                "phase": "ReadyToSwap",
                "reason": "ReadyToSwap",
                "message": "The staged set is healthy and waits for the swap: scaleset swap",
                "fromRevision": "web-1",
                "toRevision": "web-2",
            },
            "staged": {
                "production": "blue",
                "productionRevision": "web-1",
                "staging": {"slot": "green", "revision": "web-2"},
            },
        },
    }
    text = rendered(staged)
    assert "phase ReadyToSwap" in text
    assert "staging web-2 in slot green" in text
    assert "Rolling web-1 -> web-2" not in text  # a staged set has no batches
    assert "ReadyToSwap: The staged set is healthy and waits for the swap: scaleset swap" in text
