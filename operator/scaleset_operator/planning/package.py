"""One update package per instance: every pending update whose window is open, in one template, one restart.

The controller rolls the package out like a template change: the template it returns is the new
update revision; each instance moves to it in one step (an in-place image change restarts each
changed container once; a hotpatch changes only an annotation). What is left out waits for its
scope's window and comes in a later package.

Extensions are ordered by ``provisionAfterExtensions``: their sidecar containers stand in the
template in that order (the kubelet starts a pod's containers in order), and a template already in
that order is left as it is, so the ordering alone never changes a revision that respected it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scaleset_operator.api.models import (
    AutomaticUpdatesStatus,
    Extension,
    InstallPatches,
    MaintenanceScope,
    PendingUpdate,
    RebootSetting,
    ScaleSetSpec,
    UpgradePolicySpec,
)
from scaleset_operator.planning.automatic import choose, effective_template, overlay_of, prune, record_patches
from scaleset_operator.planning.catalog import Catalog, container_image
from scaleset_operator.planning.maintenance import AssignedMaintenance, GateDecision, may_start
from scaleset_operator.planning.patches import patches_for, patching_disabled, select_patches
from scaleset_operator.planning.updates import (
    PendingKind,
    automatic_work_policy,
    base_published_at,
    find_pending,
    gate_scope,
    patch_update,
    scope_of,
)


class ExtensionOrderError(ValueError):
    """provisionAfterExtensions that cannot be satisfied; the message names the field."""


def provision_order(extensions: Sequence[Extension], position: Mapping[str, int] | None = None) -> list[str]:
    """Extension names in an order where each comes after those in its provisionAfterExtensions.

    Among the extensions free to go next, the one with the lowest `position` (default: its index in
    spec.extensions) goes first, so an order that already holds is returned unchanged.
    """
    names = [extension.name for extension in extensions]
    rank = position or {name: index for index, name in enumerate(names)}
    after = {
        extension.name: set(extension.provision_after_extensions) & set(names) for extension in extensions
    }
    ordered: list[str] = []
    remaining = set(names)
    while remaining:
        ready = [name for name in remaining if not (after[name] & remaining)]
        if not ready:
            cycle = _cycle(after, remaining)
            raise ExtensionOrderError(
                f"spec.extensions[{cycle[0]}].provisionAfterExtensions: the extensions wait for each other "
                f"in a cycle ({' -> '.join([*cycle, cycle[0]])})."
            )
        chosen = min(ready, key=lambda name: (rank.get(name, len(rank)), name))
        ordered.append(chosen)
        remaining.remove(chosen)
    return ordered


def _cycle(after: Mapping[str, set[str]], remaining: set[str]) -> list[str]:
    # Every remaining extension waits for another remaining one, so walking "waits for" links from
    # any of them must come back to a name already seen.
    path: list[str] = []
    name = min(remaining)
    while name not in path:
        path.append(name)
        name = min(after[name] & remaining)
    return path[path.index(name) :]


def order_sidecars(template: Mapping[str, Any], extensions: Sequence[Extension]) -> dict[str, Any]:
    """The template with the extensions' sidecar containers in provision order, in the places they hold.

    Other containers keep their positions; a template whose sidecars are in order comes back equal.
    """
    result = copy.deepcopy(dict(template))
    containers: list[dict[str, Any]] = result["spec"]["containers"]
    index_of = {container.get("name"): index for index, container in enumerate(containers)}
    by_container: dict[str, Extension] = {}
    for extension in extensions:
        if extension.container in index_of:
            by_container.setdefault(extension.container, extension)
    sidecars = list(by_container.values())
    position = {extension.name: index_of[extension.container] for extension in sidecars}
    order = provision_order(sidecars, position)
    slots = sorted(position.values())
    container_of = {extension.name: extension.container for extension in sidecars}
    originals = list(containers)
    for slot, name in zip(slots, order, strict=True):
        containers[slot] = originals[index_of[container_of[name]]]
    return result


def instance_template(spec: ScaleSetSpec, overlay: AutomaticUpdatesStatus | None) -> dict[str, Any]:
    """The template instances run: spec.template, with the overlay laid over it, sidecars in provision order."""
    return order_sidecars(effective_template(spec.template, overlay), spec.extensions)


@dataclass(frozen=True)
class Package:
    """What automatic updates do now: the overlay to store, the template to roll out, and what waits."""

    overlay: AutomaticUpdatesStatus
    template: dict[str, Any]
    included: tuple[PendingUpdate, ...]
    waiting: tuple[tuple[PendingUpdate, GateDecision], ...]
    pending: tuple[PendingUpdate, ...]
    policy: UpgradePolicySpec
    restart: bool
    gates: Mapping[MaintenanceScope, GateDecision] = field(default_factory=dict)

    @property
    def scopes(self) -> frozenset[MaintenanceScope]:
        """The scopes of what this package adds; on later passes use automatic_scopes of the revisions."""
        return frozenset(scope_of(update) for update in self.included)


def plan_package(
    spec: ScaleSetSpec,
    policy: UpgradePolicySpec,
    catalog: Catalog,
    overlay: AutomaticUpdatesStatus | None,
    now: datetime,
    assigned: AssignedMaintenance | None = None,
    settings: InstallPatches | None = None,
) -> Package:
    """Combine every pending update whose scope may start now into one package.

    Guest patches are chosen against the OS image the package runs: a new OS image carries the
    patches published before it, so those are not applied on top of it. They are applied only when
    the policy enables automaticGuestPatching; otherwise they wait, assessed, in `waiting`.
    """
    assigned = assigned or AssignedMaintenance()
    current = prune(overlay or AutomaticUpdatesStatus(), spec.template)
    found = find_pending(spec, policy, catalog, current, now, settings)
    pending = found.updates()
    scopes = {scope_of(update) for update in pending}
    # Patches newer than an OS image this package moves to can be due although none is pending now.
    if patches_for(catalog, found.os_repository, None):
        scopes.add(MaintenanceScope.IN_GUEST_PATCH)
    gates = {scope: gate_scope(assigned, scope, spec.time_zone, now, pending) for scope in sorted(scopes)}
    guest = policy.automatic_guest_patching
    if MaintenanceScope.IN_GUEST_PATCH in gates and not guest.enabled:
        # Update management assesses without installing: the patches show in pendingUpdates, no more.
        gates[MaintenanceScope.IN_GUEST_PATCH] = patching_disabled()
    open_scopes = {scope for scope, gate in gates.items() if may_start(gate)}
    resolutions = []
    if found.os_image is not None and MaintenanceScope.OS_IMAGE in open_scopes:
        resolutions.append(found.os_image)
    if MaintenanceScope.EXTENSION in open_scopes:
        resolutions.extend(found.extensions)
    chosen = choose(current, spec.template, resolutions, now)
    included = [
        update for update in pending if scope_of(update) in open_scopes and update.kind != PendingKind.PATCH
    ]
    restart = False
    if MaintenanceScope.IN_GUEST_PATCH in open_scopes:
        running = effective_template(spec.template, chosen.model_copy(update={"patches": None}))
        os_image = container_image(running, spec.os_container_name) or ""
        moved = chosen.os_image != current.os_image
        applied = (
            [] if moved or chosen.patches is None else chosen.patches.patch_ids + chosen.patches.hotpatch_ids
        )
        selection = select_patches(
            patches_for(catalog, found.os_repository, base_published_at(catalog, os_image)),
            settings or InstallPatches(),
            applied,
            chosen.failed_patch_ids,
            now,
            hotpatching=guest.enable_hotpatching,
        )
        if selection.due:
            # Under rebootSetting Always a hotpatch restarts too, so it is recorded with those that do.
            always = (settings or InstallPatches()).reboot_setting == RebootSetting.ALWAYS
            restarting = [*selection.image_patches, *(selection.hotpatches if always else ())]
            chosen = record_patches(
                chosen if not moved else chosen.model_copy(update={"patches": None}),
                spec.template,
                spec.os_container_name,
                selection.image,
                [patch.id for patch in restarting],
                [] if always else [patch.id for patch in selection.hotpatches],
                now,
            )
            included.extend(patch_update(patch) for patch in selection.due)
            restart = selection.restart
    included_keys = {(update.kind, update.name) for update in included}
    waiting = tuple(
        (update, gates[scope_of(update)])
        for update in pending
        if (update.kind, update.name) not in included_keys and not may_start(gates[scope_of(update)])
    )
    return Package(
        overlay=chosen,
        template=instance_template(spec, chosen),
        included=tuple(included),
        waiting=waiting,
        pending=tuple(pending),
        policy=automatic_work_policy(policy) if included else policy,
        restart=restart or any(update.kind == PendingKind.OS_IMAGE for update in included),
        gates=gates,
    )


def automatic_scopes(
    from_template: Mapping[str, Any], to_template: Mapping[str, Any]
) -> frozenset[MaintenanceScope]:
    """The scopes of the automatic updates that a roll-out from one revision to another carries.

    Read from the revisions' own records (overlay_of), so it holds on every pass of a roll-out, after
    the package's overlay is stored and plan_package has nothing new to include.
    """
    before, after = overlay_of(from_template), overlay_of(to_template)
    scopes: set[MaintenanceScope] = set()
    if before.os_image != after.os_image:
        scopes.add(MaintenanceScope.OS_IMAGE)
    if before.extensions != after.extensions:
        scopes.add(MaintenanceScope.EXTENSION)
    if before.patches != after.patches:
        scopes.add(MaintenanceScope.IN_GUEST_PATCH)
    return frozenset(scopes)


def restart_due(from_template: Mapping[str, Any], to_template: Mapping[str, Any], os_container: str) -> bool:
    """Whether moving an instance between these revisions must restart it although its OS container's
    image stays: patches applied with a restart (a rebootRequired patch, any patch under rebootSetting
    Always) that the instance does not have yet. A changed image restarts the container anyway."""
    before, after = overlay_of(from_template).patches, overlay_of(to_template).patches
    new = set(after.patch_ids if after else ()) - set(before.patch_ids if before else ())
    return bool(new) and container_image(from_template, os_container) == container_image(
        to_template, os_container
    )


def restarts_in_place(from_template: Mapping[str, Any], to_template: Mapping[str, Any]) -> bool:
    """Whether updating an instance in place from one revision to another restarts a container: an
    image changes. A move that changes only the pod's labels and annotations, as a hotpatch does,
    restarts nothing; it is no reboot, so no scheduled event announces it."""

    def images(template: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        containers = (template.get("spec") or {}).get("containers") or []
        return [(container.get("name"), container.get("image")) for container in containers]

    return images(from_template) != images(to_template)


def gate_package_batch(
    assigned: AssignedMaintenance,
    scopes: frozenset[MaintenanceScope],
    time_zone: str | None,
    now: datetime,
    pending: Sequence[PendingUpdate] = (),
) -> GateDecision | None:
    """Before each batch of a package: the first gate of its scopes that is closed, else the first open one.

    None for a package of no automatic scope (a template change the user made is never gated).
    """
    decisions = [gate_scope(assigned, scope, time_zone, now, pending) for scope in sorted(scopes)]
    closed = [decision for decision in decisions if not may_start(decision)]
    return closed[0] if closed else (decisions[0] if decisions else None)
