"""Guest patches: which published patches an instance gets, image patch or hotpatch, and the off-peak hours.

Nothing here installs a patch unless the UpgradePolicy enables ``automaticGuestPatching`` (the VM
API's patchMode AutomaticByPlatform); without it the selection is an assessment only, shown in
status.pendingUpdates. Selection, as automatic VM guest patching does it:

- A patch is for the ScaleSet when its ``appliesTo`` names the OS container's repository.
- Critical and Security patches only, unless an assigned InGuestPatch configuration's
  ``installPatches`` says otherwise: its classifications, plus ``patchIdsToInclude`` whatever their
  classification, minus ``patchIdsToExclude`` always.
- A patch published at or before the OS image the instances run is in that image already. A patch
  applied before, or one whose roll-out was rolled back, is not applied again.
- ``rebootSetting``: IfRequired restarts the OS container for a patched image or a patch with
  ``rebootRequired``, never for a hotpatch; Never holds back every patch that needs a restart (it
  stays pending) and applies hotpatches; Always restarts whenever anything is applied.
- Hotpatching is an opt-in of its own (``enableHotpatching``): without it a hotpatch is installed as
  a patch that restarts the instance, as a machine that cannot take hotpatches gets the same fix in
  an update that needs a restart.

A patch with an image is applied by running that image (the container restarts: the reboot); when
several are due the one published last is run, as a patched image carries the fixes before it. A
hotpatch changes no container: its id is added to the pod's HOTPATCHES_ANNOTATION.

With no InGuestPatch window assigned, patches go in off-peak hours: 22:00 to 06:00 wall-clock time
in ``spec.timeZone`` (IANA or Windows name, UTC when unset). Across a clock change the night is an
hour shorter or longer; a 22:00 or 06:00 that the clock skips opens or closes when the gap ends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from scaleset_operator.api.models import (
    InstallPatches,
    MaintenanceConfiguration,
    MaintenanceScope,
    PatchClassification,
    RebootSetting,
)
from scaleset_operator.planning.catalog import Catalog, Patch
from scaleset_operator.planning.maintenance import AssignedMaintenance, Closed, GateDecision, Open, gate_batch
from scaleset_operator.planning.windows import Window, localize, resolve_time_zone

OFF_PEAK_START: Final = time(22, 0)
OFF_PEAK_END: Final = time(6, 0)
DEFAULT_CLASSIFICATIONS: Final = (PatchClassification.CRITICAL, PatchClassification.SECURITY)


def install_settings(configurations: Iterable[MaintenanceConfiguration]) -> InstallPatches:
    """The installPatches that hold: the first assigned InGuestPatch configuration's by name, else the defaults.

    Pass the configurations assigned to the ScaleSet (planning.maintenance.applies_to).
    """
    in_guest = sorted(
        (
            configuration
            for configuration in configurations
            if configuration.spec.maintenance_scope == MaintenanceScope.IN_GUEST_PATCH
        ),
        key=lambda configuration: configuration.metadata.name or "",
    )
    return in_guest[0].spec.install_patches if in_guest else InstallPatches()


class HeldReason(StrEnum):
    """Why a patch that is for the ScaleSet is not applied now."""

    CLASSIFICATION = "ClassificationNotIncluded"
    EXCLUDED = "Excluded"
    REBOOT_NEVER = "RebootSettingNever"
    FAILED = "RolledBack"


@dataclass(frozen=True)
class PatchSelection:
    """The patches due for the OS image, split by how they are applied."""

    image_patches: tuple[Patch, ...] = ()  # applied with a restart: a patched image, or none that needs one
    hotpatches: tuple[Patch, ...] = ()
    held: tuple[tuple[Patch, HeldReason], ...] = ()
    restart: bool = False

    @property
    def due(self) -> tuple[Patch, ...]:
        return self.image_patches + self.hotpatches

    @property
    def image(self) -> str | None:
        """The patched image to run: the one published last (a patched image carries those before it)."""
        with_image = [patch for patch in self.image_patches if patch.image is not None]
        if not with_image:
            return None
        oldest = datetime.min.replace(tzinfo=UTC)
        return max(with_image, key=lambda patch: (patch.published_at or oldest, patch.id)).image


def patches_for(catalog: Catalog, repository: str, base_published_at: datetime | None) -> list[Patch]:
    """Published patches for an OS repository that are newer than the OS image the instances run."""
    return [
        patch
        for patch in catalog.patches
        if repository in patch.applies_to
        and (
            base_published_at is None or patch.published_at is None or patch.published_at > base_published_at
        )
    ]


def select_patches(
    candidates: Iterable[Patch],
    settings: InstallPatches,
    applied: Collection[str] = (),
    failed: Collection[str] = (),
    now: datetime | None = None,
    hotpatching: bool = True,
) -> PatchSelection:
    """Which of the patches for the OS image are applied, and whether that restarts the OS container.

    `applied`: patches the instances have (status.automaticUpdates.patches); `failed`: patches whose
    roll-out was rolled back; `now`: patches published later are not yet known; `hotpatching`
    (the policy's enableHotpatching): without it a hotpatch is applied with a restart.
    """
    classifications = {PatchClassification(item) for item in settings.classifications_to_include}
    included, excluded = set(settings.patch_ids_to_include), set(settings.patch_ids_to_exclude)
    reboot = RebootSetting(settings.reboot_setting)
    image_patches: list[Patch] = []
    hotpatches: list[Patch] = []
    held: list[tuple[Patch, HeldReason]] = []
    for patch in sorted(candidates, key=lambda item: item.id):
        if patch.id in applied or (
            now is not None and patch.published_at is not None and patch.published_at > now
        ):
            continue
        if patch.id in excluded:
            held.append((patch, HeldReason.EXCLUDED))
        elif patch.id in failed:
            held.append((patch, HeldReason.FAILED))
        elif patch.classification not in classifications and patch.id not in included:
            held.append((patch, HeldReason.CLASSIFICATION))
        elif (patch.restarts or not hotpatching) and reboot == RebootSetting.NEVER:
            held.append((patch, HeldReason.REBOOT_NEVER))
        elif patch.restarts or not hotpatching:
            image_patches.append(patch)
        else:
            hotpatches.append(patch)
    restart = bool(image_patches) or (reboot == RebootSetting.ALWAYS and bool(hotpatches))
    return PatchSelection(tuple(image_patches), tuple(hotpatches), tuple(held), restart)


# --------------------------------------------------------------------------- off-peak hours


def _zone(time_zone: str | None) -> ZoneInfo:
    return ZoneInfo("UTC") if not time_zone else resolve_time_zone(time_zone, "spec.timeZone")


def _night(day: date, zone: ZoneInfo) -> Window:
    start = localize(datetime.combine(day, OFF_PEAK_START), zone)
    end = localize(datetime.combine(day + timedelta(days=1), OFF_PEAK_END), zone)
    return Window(start, end)


def off_peak_window(now: datetime, time_zone: str | None) -> Window:
    """The off-peak night that holds `now`, or else the next one; times in the zone."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    zone = _zone(time_zone)
    today = now.astimezone(zone).date()
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        night = _night(day, zone)
        if night.end_utc > now.astimezone(UTC):
            return night
    raise AssertionError("a night ends within two days")  # pragma: no cover


def in_off_peak(now: datetime, time_zone: str | None) -> bool:
    """Whether `now` is between 22:00 and 06:00 in the zone (WindowError naming spec.timeZone if unknown)."""
    return off_peak_window(now, time_zone).contains(now)


def next_off_peak(now: datetime, time_zone: str | None) -> datetime:
    """The start of the next off-peak night that begins after `now`, in the zone."""
    night = off_peak_window(now, time_zone)
    if night.start_utc > now.astimezone(UTC):
        return night.start
    return _night(night.start.date() + timedelta(days=1), _zone(time_zone)).start


def patching_disabled() -> Closed:
    """The gate of guest patches while the UpgradePolicy does not enable them: assessed, never installed."""
    return Closed(
        None,
        "Assessed, not installed: the UpgradePolicy's spec.automaticGuestPatching.enabled is off, so guest "
        "patches never touch the instances.",
        reason="AutomaticGuestPatchingDisabled",
    )


def gate_patches(
    assigned: AssignedMaintenance, time_zone: str | None, now: datetime, pending_since: datetime | None = None
) -> GateDecision:
    """May a batch of guest patching start now? The InGuestPatch window when one is assigned, else off-peak hours."""
    if assigned.for_scope(MaintenanceScope.IN_GUEST_PATCH) is not None:
        return gate_batch(assigned, MaintenanceScope.IN_GUEST_PATCH, now, pending_since)
    night = off_peak_window(now, time_zone)
    zone = night.start.tzinfo
    if night.contains(now):
        return Open(
            "OffPeakHours",
            f"Guest patches go in off-peak hours; this night ends at {night.end.isoformat(timespec='minutes')} ({zone}).",
            night,
        )
    upcoming = next_off_peak(now, time_zone)
    return Closed(
        upcoming,
        f"Guest patches wait for off-peak hours (22:00 to 06:00 in {zone}), from {upcoming.isoformat(timespec='minutes')}.",
        reason="WaitingForOffPeakHours",
    )
