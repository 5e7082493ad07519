"""`scaleset updates`: what automatic updates choose for a ScaleSet file against a catalog file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scaleset_operator.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "automatic-updates.yaml"
CATALOG = ROOT / "examples" / "imagecatalog.yaml"
NIGHT_IN_AMSTERDAM = "2024-12-10T22:30:00Z"
NOON = "2024-12-10T12:00:00Z"


def run(*args: str | Path) -> Any:
    return runner.invoke(app, ["updates", *map(str, args)])


def documents(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(path.read_text()))


def write(path: Path, *items: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(items))
    return path


def test_the_example_resolves_one_package_at_night() -> None:
    result = run(EXAMPLE, "--catalog", CATALOG, "--now", NIGHT_IN_AMSTERDAM, "-o", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["package"]["images"] == {"web": "nginx:1.27.3", "logs": "fluent/fluent-bit:3.2"}
    assert answer["package"]["hotpatches"] == ["HP-2024-0042"]
    # the policy says 50 %, extension upgrades go in batches of at most 20 %
    assert answer["package"]["maxBatchInstancePercent"] == 20
    assert [(u["kind"], u["name"]) for u in answer["pendingUpdates"]] == [
        ("OSImage", "docker.io/library/nginx"),
        ("Extension", "log-shipper"),
        ("Patch", "KB5030211"),
        ("Patch", "HP-2024-0042"),
    ]
    # KB5030211 is in nginx:1.27.3 already: only the hotpatch comes on top
    assert [u["name"] for u in answer["package"]["updates"]] == [
        "docker.io/library/nginx",
        "log-shipper",
        "HP-2024-0042",
    ]
    assert answer["automaticUpdates"]["osImage"]["reason"] == "AutomaticOSUpgrade"


def test_at_noon_patches_wait_for_off_peak_hours() -> None:
    result = run(EXAMPLE, "--catalog", CATALOG, "--now", NOON)
    assert result.exit_code == 0, result.output
    assert "WaitingForO" in result.stdout
    assert "off-peak hours (22:00 to 06:00 in Europe/Berlin)" in " ".join(result.stdout.split())
    assert "Package now: 2 update(s)" in result.stdout


def test_a_status_overlay_in_the_file_is_taken_into_account(tmp_path: Path) -> None:
    first = json.loads(run(EXAMPLE, "--catalog", CATALOG, "--now", NIGHT_IN_AMSTERDAM, "-o", "json").stdout)
    scaleset, policy = documents(EXAMPLE)
    scaleset["status"] = {"automaticUpdates": first["automaticUpdates"]}
    again = run(
        write(tmp_path / "s.yaml", scaleset, policy),
        "--catalog",
        CATALOG,
        "--now",
        NIGHT_IN_AMSTERDAM,
        "-o",
        "json",
    )
    assert again.exit_code == 0, again.output
    answer = json.loads(again.stdout)
    assert answer["pendingUpdates"] == [] and answer["package"]["updates"] == []
    assert answer["package"]["images"] == first["package"]["images"]


SUNDAY_OS_IMAGE_WINDOW = {
    "apiVersion": "fleet.scaleset.dev/v1alpha1",
    "kind": "MaintenanceConfiguration",
    "metadata": {"name": "sunday"},
    "spec": {
        "maintenanceScope": "OSImage",
        "window": {"startDateTime": "2024-12-01 02:00", "duration": "3h", "recurEvery": "Week Sunday"},
    },
}


def test_a_closed_maintenance_window_holds_the_os_image(tmp_path: Path) -> None:
    window = SUNDAY_OS_IMAGE_WINDOW
    result = run(
        EXAMPLE,
        "--catalog",
        CATALOG,
        "--now",
        NIGHT_IN_AMSTERDAM,
        "--maintenance",
        write(tmp_path / "m.yaml", window),
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    # the OS image waits; the Security patch KB5030211 (a patched image) goes in off-peak hours
    assert [u["name"] for u in answer["package"]["updates"]] == ["log-shipper", "KB5030211", "HP-2024-0042"]
    assert "osImage" not in answer["automaticUpdates"]
    assert (
        answer["automaticUpdates"]["patches"]["image"] == answer["package"]["images"]["web"] == "nginx:1.27.3"
    )
    assert answer["gates"]["OSImage"]["open"] is False
    assert answer["gates"]["OSImage"]["nextStart"] == "2024-12-15T02:00:00+00:00"


def bad_catalog(tmp_path: Path) -> Path:
    catalog = documents(CATALOG)[0]
    catalog["spec"]["images"][0]["repository"] = "Nginx"
    return write(tmp_path / "c.yaml", catalog)


def bad_time_zone(tmp_path: Path) -> Path:
    scaleset, policy = documents(EXAMPLE)
    scaleset["spec"]["timeZone"] = "Mars/Olympus"
    return write(tmp_path / "s.yaml", scaleset, policy)


def cycle(tmp_path: Path) -> Path:
    scaleset, policy = documents(EXAMPLE)
    scaleset["spec"]["template"]["spec"]["containers"].append({"name": "mon", "image": "mon:1.0"})
    scaleset["spec"]["extensions"] = [
        {"name": "log-shipper", "container": "logs", "provisionAfterExtensions": ["monitor"]},
        {"name": "monitor", "container": "mon", "provisionAfterExtensions": ["log-shipper"]},
    ]
    return write(tmp_path / "s.yaml", scaleset, policy)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (lambda p: [EXAMPLE, "--catalog", CATALOG, "--now", "tonight"], "--now 'tonight' is not a time"),
        (lambda p: [EXAMPLE, "--catalog", CATALOG, "--now", "2024-12-10T22:00"], "has no offset"),
        (lambda p: [EXAMPLE, "--catalog", EXAMPLE], "holds no ImageCatalog"),
        (lambda p: [EXAMPLE, "--catalog", CATALOG, "-o", "yaml"], "-o/--output must be one of table, json"),
        (
            lambda p: [EXAMPLE, "--catalog", bad_catalog(p)],
            "ImageCatalog default: spec.images[0].repository: 'Nginx'",
        ),
        (lambda p: [bad_time_zone(p), "--catalog", CATALOG, "--now", NOON], "spec.timeZone: 'Mars/Olympus'"),
        (
            lambda p: [cycle(p), "--catalog", CATALOG, "--now", NOON],
            "spec.extensions[log-shipper].provisionAfterExtensions",
        ),
        (lambda p: [CATALOG, "--catalog", CATALOG], "ScaleSet"),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_exit_2(
    tmp_path: Path, arguments: Any, message: str
) -> None:
    result = run(*arguments(tmp_path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]


def test_with_guest_patching_off_the_patches_are_said_to_be_assessed_not_waiting_for_a_window(
    tmp_path: Path,
) -> None:
    # The policy's switch is off (the VM API's patchMode is not AutomaticByPlatform): update management
    # assesses the patches and installs none, which no window would change; nothing else is pending.
    scaleset, policy = documents(EXAMPLE)
    policy["spec"] = {"mode": "Rolling", "automaticGuestPatching": {"enabled": False}}
    file = write(tmp_path / "shop.yaml", scaleset, policy)
    result = run(file, "--catalog", CATALOG, "--now", NIGHT_IN_AMSTERDAM)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    empty = out[out.index("Package now: empty;") :]
    assert "Patch KB5030211" in empty and "Patch HP-2024-0042" in empty
    assert empty.endswith("assessed, never installed: spec.automaticGuestPatching.enabled is off.")
    assert "waits for its window" not in out


def test_an_empty_package_names_what_each_update_waits_for(tmp_path: Path) -> None:
    # At noon on a Tuesday the Sunday OSImage window holds the OS image, and the patches wait for
    # off-peak hours; the extension's upgrade is off.
    scaleset, policy = documents(EXAMPLE)
    policy["spec"]["automaticExtensionUpgrade"] = {"enabled": False}
    file = write(tmp_path / "shop.yaml", scaleset, policy)
    window = write(tmp_path / "m.yaml", SUNDAY_OS_IMAGE_WINDOW)
    result = run(file, "--catalog", CATALOG, "--maintenance", window, "--now", NOON)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    empty = out[out.index("Package now: empty;") :]
    assert "OSImage nginx waits (WaitingForMaintenanceWindow)" in empty
    assert "wait (WaitingForOffPeakHours)" in empty
    assert "Patch KB5030211" in empty and "Patch HP-2024-0042" in empty
