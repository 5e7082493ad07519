"""Guest patch selection, image patches and hotpatches, and off-peak hours across clock changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.api.models import ImageCatalog, InstallPatches, MaintenanceConfiguration
from scaleset_operator.planning.catalog import index_catalogs
from scaleset_operator.planning.maintenance import AssignedMaintenance, Closed, Open, assign
from scaleset_operator.planning.patches import (
    HeldReason,
    gate_patches,
    in_off_peak,
    install_settings,
    next_off_peak,
    off_peak_window,
    patches_for,
    select_patches,
)
from scaleset_operator.planning.windows import WindowError

UBUNTU = "registry.example/os/ubuntu"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def catalog(*patches: dict[str, Any]) -> ImageCatalog:
    return ImageCatalog.model_validate({"metadata": {"name": "c"}, "spec": {"patches": list(patches)}})


def patch(id: str, classification: str = "Security", **fields: Any) -> dict[str, Any]:
    fields.setdefault("hotpatch", "image" not in fields)
    return {"id": id, "classification": classification, "appliesTo": [UBUNTU], **fields}


PATCHES = catalog(
    patch("KB1", "Critical", image=f"{UBUNTU}:22.4.1-kb1", publishedAt="2026-11-10T00:00:00Z"),
    patch("KB2", "Security", image=f"{UBUNTU}:22.4.1-kb2", publishedAt="2026-11-20T00:00:00Z"),
    patch("HP1", "Security", publishedAt="2026-11-15T00:00:00Z"),
    patch("HP2", "Other", publishedAt="2026-11-16T00:00:00Z"),
    patch("HP3", "Critical", rebootRequired=True, publishedAt="2026-11-17T00:00:00Z"),
    patch("OLD", "Critical", publishedAt="2026-01-01T00:00:00Z"),
    {"id": "ELSE", "classification": "Critical", "appliesTo": ["nginx"], "hotpatch": True},
)


def select(base_published: datetime | None = datetime(2026, 6, 1, tzinfo=UTC), **settings: Any) -> Any:
    applied = settings.pop("applied", ())
    failed = settings.pop("failed", ())
    now = settings.pop("now", NOW)
    candidates = patches_for(index_catalogs([PATCHES]), UBUNTU, base_published)
    return select_patches(candidates, InstallPatches.model_validate(settings), applied, failed, now)


def ids(patches: Any) -> list[str]:
    return [item.id for item in patches]


def test_critical_and_security_by_default_split_by_how_they_apply() -> None:
    selection = select()
    assert ids(selection.image_patches) == ["HP3", "KB1", "KB2"]  # HP3 asks for a restart
    assert ids(selection.hotpatches) == ["HP1"]
    assert [(item.id, reason) for item, reason in selection.held] == [("HP2", HeldReason.CLASSIFICATION)]
    assert selection.restart
    assert selection.image == f"{UBUNTU}:22.4.1-kb2"  # the patched image published last


def test_without_hotpatching_a_hotpatch_is_installed_with_a_restart() -> None:
    # enableHotpatching off: "devices that do not meet the hotpatch prerequisites will automatically
    # receive the Latest Cumulative Update (LCU) instead, which ... necessitates a device restart".
    candidates = patches_for(index_catalogs([PATCHES]), UBUNTU, datetime(2026, 6, 1, tzinfo=UTC))
    selection = select_patches(candidates, InstallPatches(), now=NOW, hotpatching=False)
    assert ids(selection.hotpatches) == []
    assert ids(selection.image_patches) == ["HP1", "HP3", "KB1", "KB2"]
    assert selection.restart
    # rebootSetting Never holds every patch that would restart, so a hotpatch too.
    never = select_patches(candidates, InstallPatches(reboot_setting="Never"), now=NOW, hotpatching=False)
    assert never.due == () and not never.restart
    assert (next(p for p, _ in never.held if p.id == "HP1"), HeldReason.REBOOT_NEVER) in never.held


def test_a_patch_older_than_the_running_image_is_in_it_already() -> None:
    assert "OLD" in ids(select(None).due)
    assert "OLD" not in ids(select().due)
    assert ids(select(datetime(2026, 11, 18, tzinfo=UTC)).due) == ["KB2"]


@pytest.mark.parametrize(
    ("settings", "due", "held"),
    [
        ({"classificationsToInclude": ["Other"]}, ["HP2"], ["HP1", "HP3", "KB1", "KB2", "OLD"]),
        ({"patchIdsToInclude": ["HP2"]}, ["HP1", "HP2", "HP3", "KB1", "KB2"], []),
        ({"patchIdsToExclude": ["KB2", "HP1"]}, ["HP3", "KB1"], ["HP1", "HP2", "KB2"]),
        ({"patchIdsToInclude": ["HP2"], "patchIdsToExclude": ["HP2"]}, ["HP1", "HP3", "KB1", "KB2"], ["HP2"]),
        ({"rebootSetting": "Never"}, ["HP1"], ["HP2", "HP3", "KB1", "KB2"]),
        ({"applied": ["KB1", "HP1"]}, ["HP3", "KB2"], ["HP2"]),
        ({"failed": ["KB2"]}, ["HP1", "HP3", "KB1"], ["HP2", "KB2"]),
        ({"now": datetime(2026, 11, 16, tzinfo=UTC)}, ["HP1", "KB1"], ["HP2"]),
    ],
)
def test_install_patches_decides(settings: dict[str, Any], due: list[str], held: list[str]) -> None:
    # With every patch a candidate (no base image date), OLD shows which classifications count.
    base = None if "classificationsToInclude" in settings else datetime(2026, 6, 1, tzinfo=UTC)
    selection = select(base, **settings)
    assert sorted(ids(selection.due)) == due
    assert sorted(item.id for item, _ in selection.held) == held


@pytest.mark.parametrize(
    ("reboot", "applied", "restart"),
    [
        ("IfRequired", ["KB1", "KB2", "HP3"], False),  # hotpatches only: no restart
        ("Always", ["KB1", "KB2", "HP3"], True),
        ("Never", [], False),
        ("IfRequired", [], True),
    ],
)
def test_reboot_setting(reboot: str, applied: list[str], restart: bool) -> None:
    assert select(rebootSetting=reboot, applied=applied).restart is restart


def test_settings_come_from_the_first_assigned_in_guest_patch_configuration() -> None:
    def configuration(name: str, scope: str, reboot: str) -> MaintenanceConfiguration:
        return MaintenanceConfiguration.model_validate(
            {
                "metadata": {"name": name},
                "spec": {
                    "maintenanceScope": scope,
                    "window": {"startDateTime": "2026-11-01 22:00", "duration": "3h", "recurEvery": "Day"},
                    "installPatches": {"rebootSetting": reboot},
                },
            }
        )

    assert install_settings([]) == InstallPatches()
    found = install_settings(
        [
            configuration("z", "InGuestPatch", "Always"),
            configuration("a", "OSImage", "Never"),
            configuration("b", "InGuestPatch", "Never"),
        ]
    )
    assert found.reboot_setting == "Never"


# --------------------------------------------------------------------------- off-peak hours

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "zone", "inside"),
    [
        (datetime(2026, 12, 1, 21, 59, tzinfo=UTC), None, False),
        (datetime(2026, 12, 1, 22, 0, tzinfo=UTC), None, True),
        (datetime(2026, 12, 2, 5, 59, tzinfo=UTC), None, True),
        (datetime(2026, 12, 2, 6, 0, tzinfo=UTC), None, False),
        (datetime(2026, 12, 1, 21, 30, tzinfo=UTC), "Europe/Berlin", True),  # 22:30 CET
        (datetime(2026, 12, 1, 21, 30, tzinfo=UTC), "W. Europe Standard Time", True),
        (datetime(2026, 12, 1, 21, 30, tzinfo=UTC), "Pacific Standard Time", False),  # 13:30 PST
        (datetime(2026, 12, 2, 6, 30, tzinfo=UTC), "Pacific Standard Time", True),  # 22:30 PST
    ],
)
def test_off_peak_is_22_to_6_in_the_instance_time_zone(now: datetime, zone: str | None, inside: bool) -> None:
    assert in_off_peak(now, zone) is inside


def test_the_night_of_spring_forward_is_an_hour_shorter() -> None:
    night = off_peak_window(berlin(2026, 3, 28, 23, 0), "Europe/Berlin")
    assert (night.start, night.end) == (berlin(2026, 3, 28, 22, 0), berlin(2026, 3, 29, 6, 0))
    assert night.length == timedelta(hours=7)
    assert night.end.utcoffset() == timedelta(hours=2)


def test_the_night_of_fall_back_is_an_hour_longer() -> None:
    night = off_peak_window(berlin(2026, 10, 24, 23, 0), "Europe/Berlin")
    assert night.length == timedelta(hours=9)
    # 02:30 happens twice that night; both are off-peak
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert in_off_peak(first, "Europe/Berlin") and in_off_peak(second, "Europe/Berlin")
    assert not in_off_peak(datetime(2026, 10, 25, 5, 0, tzinfo=UTC), "Europe/Berlin")  # 06:00 CET


def test_a_clock_change_at_midnight_shortens_the_night() -> None:
    # Havana springs forward at 00:00 (to 01:00), inside the night: 22:00 to 06:00 lasts 7 hours.
    night = off_peak_window(datetime(2026, 3, 8, 3, 0, tzinfo=UTC), "America/Havana")
    assert (night.start.hour, night.end.hour) == (22, 6)
    assert night.length == timedelta(hours=7)


def test_next_off_peak() -> None:
    assert next_off_peak(datetime(2026, 12, 1, 12, 0, tzinfo=UTC), None) == datetime(
        2026, 12, 1, 22, 0, tzinfo=UTC
    )
    # inside a night, the next night begins the next evening
    assert next_off_peak(datetime(2026, 12, 1, 23, 0, tzinfo=UTC), None) == datetime(
        2026, 12, 2, 22, 0, tzinfo=UTC
    )
    assert next_off_peak(datetime(2026, 12, 2, 3, 0, tzinfo=UTC), None) == datetime(
        2026, 12, 2, 22, 0, tzinfo=UTC
    )
    assert next_off_peak(berlin(2026, 3, 29, 12, 0), "Europe/Berlin") == berlin(2026, 3, 29, 22, 0)


def test_an_unknown_time_zone_names_the_field() -> None:
    with pytest.raises(WindowError, match=r"^spec\.timeZone: 'Mars/Olympus'"):
        in_off_peak(NOW, "Mars/Olympus")


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
zones = st.sampled_from(
    [None, "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Chatham"]
)


@settings(deadline=None)
@given(instants, zones)
def test_off_peak_agrees_with_the_wall_clock(now: datetime, zone: str | None) -> None:
    local = now.astimezone(ZoneInfo(zone or "UTC"))
    wall_inside = local.hour >= 22 or local.hour < 6
    assert in_off_peak(now, zone) is wall_inside


@settings(deadline=None)
@given(instants, zones)
def test_next_off_peak_is_later_starts_a_night_and_none_starts_between(
    now: datetime, zone: str | None
) -> None:
    upcoming = next_off_peak(now, zone)
    assert upcoming > now
    assert in_off_peak(upcoming, zone)
    assert upcoming - now <= timedelta(hours=25)
    just_before = upcoming - timedelta(minutes=1)
    assert just_before <= now or not in_off_peak(just_before, zone)


def test_with_no_in_guest_patch_window_patches_wait_for_off_peak() -> None:
    gate = gate_patches(AssignedMaintenance(), "Europe/Berlin", NOW)
    assert isinstance(gate, Closed)
    assert gate.reason == "WaitingForOffPeakHours"
    assert gate.next_start == berlin(2026, 12, 1, 22, 0)
    assert isinstance(gate_patches(AssignedMaintenance(), "Europe/Berlin", berlin(2026, 12, 1, 23, 0)), Open)


def test_an_assigned_in_guest_patch_window_replaces_off_peak() -> None:
    configuration = MaintenanceConfiguration.model_validate(
        {
            "metadata": {"name": "noon"},
            "spec": {
                "maintenanceScope": "InGuestPatch",
                "window": {"startDateTime": "2026-11-01 11:00", "duration": "3h", "recurEvery": "Day"},
            },
        }
    )
    assigned = assign([configuration], {}, {})
    assert isinstance(gate_patches(assigned, None, NOW), Open)  # 12:00 UTC: in the window, not off-peak
    assert isinstance(gate_patches(assigned, None, datetime(2026, 12, 1, 23, 0, tzinfo=UTC)), Closed)
