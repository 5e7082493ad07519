"""Update management: the updates pending for a ScaleSet, the maintenance scope of each, and the gate before a batch.

An update is pending while the catalog has published something the instances do not run yet and
automatic updates would choose it: a newer OS image (automaticOSUpgrade enabled), a newer version of
an extension that opts in (automaticExtensionUpgrade enabled and the extension's
enableAutomaticUpgrade), or a guest patch the patch settings select (listed whether or not the policy
enables automaticGuestPatching: update management assesses without installing). ``since`` is when
it was published, the moment maxDeferral counts from. An update already packaged stays listed while
the roll-out that brings it has not reached every instance (:func:`rolling_out`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from scaleset_operator.api.models import (
    AutomaticImage,
    AutomaticUpdatesStatus,
    InstallPatches,
    MaintenanceScope,
    PendingUpdate,
    ScaleSetSpec,
    UpgradeMode,
    UpgradePolicySpec,
)
from scaleset_operator.planning.automatic import base_template, overlay_of, prune
from scaleset_operator.planning.catalog import (
    Catalog,
    Patch,
    Resolution,
    container_image,
    format_time,
    parse_time,
    resolve_extensions,
    resolve_os_image,
)
from scaleset_operator.planning.images import parse_image
from scaleset_operator.planning.maintenance import AssignedMaintenance, GateDecision, gate_batch
from scaleset_operator.planning.patches import PatchSelection, gate_patches, patches_for, select_patches

# The VM rule for automatic work (OS image, extensions, guest patches): no more than 20 % of the
# instances in one batch.
EXTENSION_BATCH_PERCENT: Final = 20


class PendingKind(StrEnum):
    """The kind of a pending update, as status.pendingUpdates[].kind says it."""

    OS_IMAGE = "OSImage"
    EXTENSION = "Extension"
    PATCH = "Patch"


SCOPE_OF_KIND: Final = {
    PendingKind.OS_IMAGE: MaintenanceScope.OS_IMAGE,
    PendingKind.EXTENSION: MaintenanceScope.EXTENSION,
    PendingKind.PATCH: MaintenanceScope.IN_GUEST_PATCH,
}


def scope_of(update: PendingUpdate) -> MaintenanceScope:
    """The maintenance scope whose window an update waits for."""
    return SCOPE_OF_KIND[PendingKind(update.kind)]


def extension_policy(policy: UpgradePolicySpec) -> UpgradePolicySpec:
    """The policy an extension upgrade rolls under: the ScaleSet's, with batches of at most 20 %.

    At least one instance per batch follows from the batch rule itself (max(1, floor(...))).
    """
    rolling = policy.rolling_upgrade
    if rolling.max_batch_instance_percent <= EXTENSION_BATCH_PERCENT:
        return policy
    return policy.model_copy(
        update={
            "rolling_upgrade": rolling.model_copy(
                update={"max_batch_instance_percent": EXTENSION_BATCH_PERCENT}
            )
        }
    )


def automatic_work_policy(policy: UpgradePolicySpec) -> UpgradePolicySpec:
    """The policy automatic work (an OS image, extensions, guest patches) rolls under, whatever the mode.

    The scale set's upgrade orchestrator takes "no more than 20% of the scale set upgrading at any
    time", health-checked batch by batch: so batches of at most 20 % (at least one), and Automatic
    mode, all at once, is for a user's template change only; automatic work there goes batch by batch
    as Rolling mode does. Other modes keep their own rules (Manual's walk, Staged's second set).
    """
    capped = extension_policy(policy)
    if capped.mode != UpgradeMode.AUTOMATIC:
        return capped
    return capped.model_copy(update={"mode": UpgradeMode.ROLLING})


@dataclass(frozen=True)
class Pending:
    """What the catalog offers the ScaleSet now: OS and extension resolutions and the patch selection."""

    os_image: Resolution | None
    extensions: tuple[Resolution, ...]
    patches: PatchSelection
    os_repository: str

    def updates(self) -> list[PendingUpdate]:
        """status.pendingUpdates: OS image, then extensions, then patches, each with its scope."""
        result = []
        if self.os_image is not None and self.os_image.release is not None:
            result.append(_update(PendingKind.OS_IMAGE, self.os_image))
        result.extend(
            _update(PendingKind.EXTENSION, item) for item in self.extensions if item.release is not None
        )
        result.extend(patch_update(patch) for patch in self.patches.due)
        return result


def patch_update(patch: Patch) -> PendingUpdate:
    """A guest patch as a pending update: its version is the patched image, or ``hotpatch``."""
    return PendingUpdate(
        kind=str(PendingKind.PATCH),
        name=patch.id,
        classification=str(patch.classification),
        version=patch.image if patch.restarts and patch.image else ("hotpatch" if patch.hotpatch else None),
        since=None if patch.published_at is None else format_time(patch.published_at),
        scope=str(MaintenanceScope.IN_GUEST_PATCH),
    )


def _update(kind: PendingKind, resolution: Resolution) -> PendingUpdate:
    assert resolution.release is not None
    return PendingUpdate(
        kind=str(kind),
        name=resolution.name,
        version=resolution.release.version,
        since=format_time(resolution.release.published_at),
        scope=str(SCOPE_OF_KIND[kind]),
    )


def base_published_at(catalog: Catalog, image: str) -> datetime | None:
    """When the OS image the instances run was published; None when the catalog does not list it."""
    reference = parse_image(image, "image")
    if reference.tag is None:
        return None
    release = catalog.release(reference.repository, reference.tag)
    return None if release is None else release.published_at


def find_pending(
    spec: ScaleSetSpec,
    policy: UpgradePolicySpec,
    catalog: Catalog,
    overlay: AutomaticUpdatesStatus | None,
    now: datetime,
    settings: InstallPatches | None = None,
) -> Pending:
    """Everything the catalog offers the ScaleSet at `now`, measured against the template the instances run."""
    current = prune(overlay or AutomaticUpdatesStatus(), spec.template)
    running = base_template(spec.template, current)
    os_image = (
        resolve_os_image(spec, running, catalog, now, current.rolled_back)
        if policy.automatic_os_upgrade.enabled
        else None
    )
    extensions = (
        tuple(resolve_extensions(spec, running, catalog, now, current.rolled_back))
        if policy.automatic_extension_upgrade.enabled
        else ()
    )
    os_running = container_image(running, spec.os_container_name) or ""
    repository = parse_image(
        os_running, f"spec.template.spec.containers[{spec.os_container_name}].image"
    ).repository
    applied = [] if current.patches is None else current.patches.patch_ids + current.patches.hotpatch_ids
    patches = select_patches(
        patches_for(catalog, repository, base_published_at(catalog, os_running)),
        settings or InstallPatches(),
        applied,
        current.failed_patch_ids,
        now,
        hotpatching=policy.automatic_guest_patching.enable_hotpatching,
    )
    return Pending(os_image, extensions, patches, repository)


def pending_updates(
    spec: ScaleSetSpec,
    policy: UpgradePolicySpec,
    catalog: Catalog,
    overlay: AutomaticUpdatesStatus | None,
    now: datetime,
    settings: InstallPatches | None = None,
) -> list[PendingUpdate]:
    """status.pendingUpdates of a ScaleSet at `now`."""
    return find_pending(spec, policy, catalog, overlay, now, settings).updates()


def rolling_out(
    from_template: Mapping[str, Any], to_template: Mapping[str, Any], catalog: Catalog
) -> list[PendingUpdate]:
    """The automatic updates a roll-out from one revision to another brings: still pending, since not
    every instance runs them yet. Read from the revisions' own records (overlay_of); a patch's
    classification and publication come from the catalog."""
    before, after = overlay_of(from_template), overlay_of(to_template)
    images: list[tuple[PendingKind, str, AutomaticImage]] = []
    if after.os_image is not None:
        images.append((PendingKind.OS_IMAGE, after.os_image.repository, after.os_image))
    images.extend((PendingKind.EXTENSION, entry.name, entry) for entry in after.extensions)
    had_images = {
        (entry.repository, entry.version) for entry in [*before.extensions, *filter(None, [before.os_image])]
    }
    result = [
        PendingUpdate(
            kind=str(kind),
            name=name,
            version=entry.version,
            since=entry.published_at,
            scope=str(SCOPE_OF_KIND[kind]),
        )
        for kind, name, entry in images
        if (entry.repository, entry.version) not in had_images
    ]
    had = set() if before.patches is None else {*before.patches.patch_ids, *before.patches.hotpatch_ids}
    published = {patch.id: patch for patch in catalog.patches}
    brought = [] if after.patches is None else [*after.patches.patch_ids, *after.patches.hotpatch_ids]
    for patch_id in brought:
        if patch_id in had:
            continue
        patch = published.get(patch_id)
        result.append(
            patch_update(patch)
            if patch is not None
            else PendingUpdate(
                kind=str(PendingKind.PATCH), name=patch_id, scope=str(MaintenanceScope.IN_GUEST_PATCH)
            )
        )
    return result


def oldest_since(updates: Iterable[PendingUpdate], scope: MaintenanceScope) -> datetime | None:
    """When the oldest pending update of a scope was published: what its maxDeferral counts from."""
    times = [parse_time(item.since, "since") for item in updates if item.since and item.scope == scope]
    return min(times) if times else None


def gate_scope(
    assigned: AssignedMaintenance,
    scope: MaintenanceScope,
    time_zone: str | None,
    now: datetime,
    updates: Sequence[PendingUpdate] = (),
) -> GateDecision:
    """May a batch of automatic work of `scope` start now? Guest patches: window or off-peak hours."""
    since = oldest_since(updates, scope)
    if scope == MaintenanceScope.IN_GUEST_PATCH:
        return gate_patches(assigned, time_zone, now, since)
    return gate_batch(assigned, scope, now, since)
