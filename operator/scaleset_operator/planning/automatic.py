"""The effective template: spec.template with what automatic updates chose laid over it, stable under GitOps.

The user's ``spec.template`` keeps what they wrote; ``status.automaticUpdates`` (the overlay) records
the images and patches automatic updates chose; instances run :func:`effective_template` of both.
Whether an overlay entry still applies is decided from the template alone, every time, so that:

- re-applying the same manifest from Git changes nothing: the entry still applies;
- a template change in the same repository at an older version (the manifest lags behind) keeps the
  upgraded image;
- a template that names the entry's version or a newer one, another repository, another variant
  (``-alpine``), a digest or a tag that is no version takes over: the user spoke;
- guest patches apply to one OS image (``patches.baseImage``) and lapse when it changes, since a
  newer OS image carries them.

An empty overlay leaves the template byte for byte as it is, so a ScaleSet with no automatic
updates keeps its revision. What was applied is also written on the template as annotations
(:data:`APPLIED_ANNOTATION` as JSON, :data:`HOTPATCHES_ANNOTATION` as a list of ids), so each
instance and each ControllerRevision says what it runs, and a rollback can tell what it undoes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from scaleset_operator.api.models import (
    AppliedPatches,
    AutomaticExtensionImage,
    AutomaticImage,
    AutomaticUpdatesStatus,
    RolledBackVersion,
)
from scaleset_operator.planning.catalog import Resolution, container_image, format_time
from scaleset_operator.planning.images import ImageReferenceError, compatible, parse_image, tag_version

APPLIED_ANNOTATION: Final = "fleet.scaleset.dev/automatic-updates"
HOTPATCHES_ANNOTATION: Final = "fleet.scaleset.dev/hotpatches"
# Enough to remember every version a fleet ever refused for years of monthly releases.
MAX_REMEMBERED: Final = 50


def image_entry_applies(entry: AutomaticImage, template: Mapping[str, Any]) -> bool:
    """Whether an overlay image still applies to this template (see the module's rules)."""
    written = container_image(template, entry.container)
    if written is None:
        return False
    try:
        reference = parse_image(written, "image")
    except ImageReferenceError:
        return False
    chosen = tag_version(entry.version)
    running = reference.version
    if reference.repository != entry.repository or chosen is None or running is None:
        return False
    return compatible(chosen, running) and chosen.newer_than(running)


def patches_apply(overlay: AutomaticUpdatesStatus, template: Mapping[str, Any]) -> bool:
    """Whether the overlay's patches apply: the OS container still runs the image they were applied to."""
    patches = overlay.patches
    if patches is None or not (patches.image or patches.patch_ids or patches.hotpatch_ids):
        return False
    entry = overlay.os_image
    if entry is not None and entry.container == patches.container and image_entry_applies(entry, template):
        return entry.image == patches.base_image
    return container_image(template, patches.container) == patches.base_image


def prune(overlay: AutomaticUpdatesStatus, template: Mapping[str, Any]) -> AutomaticUpdatesStatus:
    """The overlay with only the entries that apply to `template`; what was rolled back is kept.

    This is ``overlay_after_template_change``: the controller calls it whenever spec.template may
    have changed and stores the result; it is idempotent, and effective_template gives the same
    answer before and after it.
    """
    os_image = (
        overlay.os_image if overlay.os_image and image_entry_applies(overlay.os_image, template) else None
    )
    extensions = [entry for entry in overlay.extensions if image_entry_applies(entry, template)]
    patches = overlay.patches if patches_apply(overlay, template) else None
    return overlay.model_copy(update={"os_image": os_image, "extensions": extensions, "patches": patches})


overlay_after_template_change = prune


def applied_record(overlay: AutomaticUpdatesStatus, template: Mapping[str, Any]) -> dict[str, Any]:
    """What of the overlay applies to `template`, as the JSON written in APPLIED_ANNOTATION.

    It is the overlay itself, pruned and without what was rolled back, so that the overlay of any
    stored revision can be read back (:func:`overlay_of`) when a rollback returns to it. The times
    entries were chosen are left out: the revision is a function of what runs, not of when the
    choice was made, so a choice made again after a lost status write names the same revision.
    """
    pruned = prune(overlay, template)
    return pruned.model_dump(
        by_alias=True,
        exclude_none=True,
        exclude_defaults=True,
        exclude={
            "rolled_back": True,
            "failed_patch_ids": True,
            "os_image": {"since"},
            "extensions": {"__all__": {"since"}},
            "patches": {"since"},
        },
    )


def effective_template(
    spec_template: Mapping[str, Any], overlay: AutomaticUpdatesStatus | None
) -> dict[str, Any]:
    """The template the instances run: `spec_template` with the overlay's entries that apply to it."""
    result = copy.deepcopy(dict(spec_template))
    if overlay is None:
        return result
    record = applied_record(overlay, spec_template)
    if not record:
        return result
    images: dict[str, str] = {}
    if overlay.os_image is not None and image_entry_applies(overlay.os_image, spec_template):
        images[overlay.os_image.container] = overlay.os_image.image
    for entry in overlay.extensions:
        if image_entry_applies(entry, spec_template):
            images[entry.container] = entry.image
    annotations = dict((result.get("metadata") or {}).get("annotations") or {})
    if overlay.patches is not None and patches_apply(overlay, spec_template):
        if overlay.patches.image:
            images[overlay.patches.container] = overlay.patches.image
        if overlay.patches.hotpatch_ids:
            annotations[HOTPATCHES_ANNOTATION] = ",".join(overlay.patches.hotpatch_ids)
    annotations[APPLIED_ANNOTATION] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    for container in result["spec"]["containers"]:
        if container.get("name") in images:
            container["image"] = images[container["name"]]
    result["metadata"] = {**(result.get("metadata") or {}), "annotations": annotations}
    return result


def base_template(spec_template: Mapping[str, Any], overlay: AutomaticUpdatesStatus | None) -> dict[str, Any]:
    """The effective template without guest patches: what OS and extension versions are compared with."""
    if overlay is None:
        return effective_template(spec_template, None)
    return effective_template(spec_template, overlay.model_copy(update={"patches": None}))


def hotpatches_of(template_or_pod_metadata: Mapping[str, Any]) -> list[str]:
    """The hotpatch ids recorded on a pod's (or template's) metadata."""
    text = str((template_or_pod_metadata.get("annotations") or {}).get(HOTPATCHES_ANNOTATION) or "")
    return [item for item in text.split(",") if item]


# --------------------------------------------------------------------------- recording choices


def choose(
    overlay: AutomaticUpdatesStatus | None,
    spec_template: Mapping[str, Any],
    resolutions: Iterable[Resolution],
    now: datetime,
    reason: str | None = None,
) -> AutomaticUpdatesStatus:
    """The overlay with the releases of `resolutions` recorded; entries that do not apply are pruned.

    `reason` overrides the recorded reason (ManualUpgrade for ``scaleset upgrade --to``).
    """
    result = prune(overlay or AutomaticUpdatesStatus(), spec_template)
    extensions = {entry.name: entry for entry in result.extensions}
    os_image = result.os_image
    for resolution in resolutions:
        if resolution.release is None or resolution.image is None or resolution.repository is None:
            continue
        fields = {
            "container": resolution.container,
            "repository": resolution.repository,
            "version": resolution.release.version,
            "image": resolution.image,
            "since": format_time(now),
            "published_at": format_time(resolution.release.published_at),
        }
        if resolution.kind == "OSImage":
            os_image = AutomaticImage(reason=reason or "AutomaticOSUpgrade", **fields)
        else:
            extensions[resolution.name] = AutomaticExtensionImage(
                name=resolution.name, reason=reason or "AutomaticExtensionUpgrade", **fields
            )
    chosen = result.model_copy(
        update={"os_image": os_image, "extensions": [extensions[name] for name in sorted(extensions)]}
    )
    return prune(chosen, spec_template)


def record_patches(
    overlay: AutomaticUpdatesStatus,
    spec_template: Mapping[str, Any],
    os_container: str,
    patch_image: str | None,
    patch_ids: Sequence[str],
    hotpatch_ids: Sequence[str],
    now: datetime,
) -> AutomaticUpdatesStatus:
    """The overlay with more patches applied to the OS image it runs now (after its OS image entry).

    Patches already applied to the same base are kept; a new patched image replaces the old one (a
    patched image carries the patches before it).
    """
    base = base_template(spec_template, overlay)
    base_image = container_image(base, os_container) or ""
    previous = overlay.patches if patches_apply(overlay, spec_template) else None
    applied = previous or AppliedPatches(container=os_container, base_image=base_image)
    if not patch_ids and not hotpatch_ids:
        return overlay
    patches = applied.model_copy(
        update={
            "image": patch_image or applied.image,
            "patch_ids": applied.patch_ids + [item for item in patch_ids if item not in applied.patch_ids],
            "hotpatch_ids": applied.hotpatch_ids
            + [item for item in hotpatch_ids if item not in applied.hotpatch_ids],
            "since": format_time(now),
        }
    )
    return overlay.model_copy(update={"patches": patches})


# --------------------------------------------------------------------------- rollback


def overlay_of(template: Mapping[str, Any]) -> AutomaticUpdatesStatus:
    """The overlay a template (a stored revision) was made with; empty when it has none or it is unreadable."""
    text = ((template.get("metadata") or {}).get("annotations") or {}).get(APPLIED_ANNOTATION)
    try:
        return AutomaticUpdatesStatus.model_validate_json(text) if text else AutomaticUpdatesStatus()
    except ValueError:
        return AutomaticUpdatesStatus()


def _versions(overlay: AutomaticUpdatesStatus) -> set[tuple[str, str]]:
    entries: list[AutomaticImage] = [*overlay.extensions]
    if overlay.os_image is not None:
        entries.append(overlay.os_image)
    return {(entry.repository, entry.version) for entry in entries}


def _patch_ids(overlay: AutomaticUpdatesStatus) -> list[str]:
    return [] if overlay.patches is None else overlay.patches.patch_ids + overlay.patches.hotpatch_ids


def rolled_back_by(
    rolled_back_template: Mapping[str, Any], restored_template: Mapping[str, Any]
) -> AutomaticUpdatesStatus:
    """What a rollback from one revision to another undoes: versions and patches automatic updates chose."""
    undone, kept = overlay_of(rolled_back_template), overlay_of(restored_template)
    versions = sorted(_versions(undone) - _versions(kept))
    kept_patches = _patch_ids(kept)
    return AutomaticUpdatesStatus(
        rolled_back=[
            RolledBackVersion(repository=repository, version=version) for repository, version in versions
        ],
        failed_patch_ids=[item for item in _patch_ids(undone) if item not in kept_patches],
    )


def automatic_rollback_wanted(
    disable_automatic_rollback: bool,
    rolled_back_template: Mapping[str, Any],
    restored_template: Mapping[str, Any],
) -> bool:
    """Whether a policy breach of this upgrade should roll it back by itself: it is automatic, and allowed."""
    undone = rolled_back_by(rolled_back_template, restored_template)
    return not disable_automatic_rollback and bool(undone.rolled_back or undone.failed_patch_ids)


def overlay_after_rollback(
    overlay: AutomaticUpdatesStatus | None,
    spec_template: Mapping[str, Any],
    rolled_back_template: Mapping[str, Any],
    restored_template: Mapping[str, Any],
    now: datetime,
) -> AutomaticUpdatesStatus:
    """The overlay once a rollback started: the restored revision's own overlay, and the versions and
    patches undone remembered, never chosen again.

    So effective_template gives the restored revision's images (no second roll-out follows the
    rollback), and the next resolution chooses again from the catalog, skipping what failed.
    """
    current = overlay or AutomaticUpdatesStatus()
    undone = rolled_back_by(rolled_back_template, restored_template)
    restored = overlay_of(restored_template)
    remembered = {(item.repository, item.version) for item in current.rolled_back}
    rolled_back = current.rolled_back + [
        item.model_copy(update={"at": format_time(now)})
        for item in undone.rolled_back
        if (item.repository, item.version) not in remembered
    ]
    failed = current.failed_patch_ids + [
        item for item in undone.failed_patch_ids if item not in current.failed_patch_ids
    ]
    result = restored.model_copy(
        update={"rolled_back": rolled_back[-MAX_REMEMBERED:], "failed_patch_ids": failed[-MAX_REMEMBERED:]}
    )
    return prune(result, spec_template)
