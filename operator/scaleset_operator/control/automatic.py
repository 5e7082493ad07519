"""Automatic updates in the reconcile pass: what the catalogs offer, the package stored, and its gate per batch.

The decisions are pure functions in planning/ (catalog.py, automatic.py, patches.py, updates.py,
package.py); this actor reads what they need (ImageCatalogs, the stored overlay), stores the
package's overlay in `status.automaticUpdates` before any revision is made from it, consumes the
`scaleset upgrade` annotation, and answers, before each batch, whether the window of the automatic
work a roll-out carries is open. A template change made by the user is never gated.

The overlay is stored only between upgrades: a new version published while a roll-out, a rollback
or a restart runs waits for it to end (it shows in status.pendingUpdates meanwhile), so a rollback is
never superseded by the next published version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scaleset_operator.api.models import AutomaticUpdatesStatus, ImageCatalog, MaintenanceScope, PendingUpdate
from scaleset_operator.control.context import InvalidInput, Snapshot, timestamp
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.kube import ApiError, Kube, fleet_path
from scaleset_operator.identity import ANNOTATION_OS_UPGRADE, ANNOTATION_SPEC_REVISION
from scaleset_operator.planning.automatic import (
    automatic_rollback_wanted,
    base_template,
    choose,
    overlay_after_rollback,
    overlay_of,
    prune,
    rolled_back_by,
)
from scaleset_operator.planning.catalog import Catalog, index_catalogs, requested_os_image
from scaleset_operator.planning.maintenance import AssignedMaintenance, GateDecision
from scaleset_operator.planning.package import Package, automatic_scopes, gate_package_batch, plan_package
from scaleset_operator.planning.updates import automatic_work_policy, rolling_out

log = logging.getLogger(__name__)

MANUAL_UPGRADE = "ManualUpgrade"


def stored_overlay(scaleset: dict[str, Any]) -> AutomaticUpdatesStatus:
    """status.automaticUpdates as stored; empty when absent or unreadable (a newer operator's field)."""
    raw = (scaleset.get("status") or {}).get("automaticUpdates") or {}
    try:
        return AutomaticUpdatesStatus.model_validate(raw)
    except ValidationError:
        return AutomaticUpdatesStatus()


def overlay_json(overlay: AutomaticUpdatesStatus) -> dict[str, Any] | None:
    """The overlay as status.automaticUpdates holds it; None (the field removed) when it is empty."""
    dumped = overlay.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
    return dumped or None


def spec_revision_of(stored: dict[str, Any] | None) -> str | None:
    """The revision of the user's template a stored ControllerRevision was made from.

    Revisions made before automatic updates existed carry no annotation: their template is the user's.
    """
    if stored is None:
        return None
    annotations = stored["metadata"].get("annotations") or {}
    return str(annotations.get(ANNOTATION_SPEC_REVISION) or stored["metadata"].get("name") or "")


@dataclass(frozen=True)
class RolloutScopes:
    """What automatic work the roll-out of the update revision carries, and the user's part in it."""

    scopes: frozenset[MaintenanceScope]
    user_changed: bool

    @property
    def gated(self) -> bool:
        return bool(self.scopes) and not self.user_changed


class AutomaticUpdates:
    """Reads ImageCatalogs for one ScaleSet, stores what automatic updates chose, and gates their batches."""

    def __init__(self, kube: Kube, events: EventRecorder) -> None:
        self.kube = kube
        self.events = events
        # Only to say each catalog problem once per operator run (an Event, not state).
        self._said: set[str] = set()

    # ------------------------------------------------------------------ the package

    def catalog(self, snapshot: Snapshot) -> Catalog | None:
        """Every ImageCatalog the pass read, merged; None when there is none at all."""
        raw = snapshot.image_catalogs
        if not raw:
            return None
        catalogs = []
        for item in raw:
            try:
                catalogs.append(ImageCatalog.model_validate(item))
            except ValidationError as error:  # validated by the API server; a newer field is not fatal
                log.warning("ImageCatalog %s ignored: %s", item["metadata"].get("name"), error)
        return index_catalogs(catalogs)

    def plan(self, snapshot: Snapshot, assigned: AssignedMaintenance, now: datetime) -> Package | None:
        """What automatic updates would roll out now; None when nothing is automatic for this ScaleSet."""
        overlay = stored_overlay(snapshot.scaleset)
        catalog = self.catalog(snapshot)
        if catalog is None and overlay_json(overlay) is None:
            return None
        catalog = catalog or Catalog()
        for problem in catalog.problems:
            if problem not in self._said:
                self._said.add(problem)
                self.events.warning(snapshot.scaleset, "InvalidImageCatalog", problem)
        policy = snapshot.policy
        try:
            return plan_package(
                snapshot.spec, policy, catalog, overlay, now, assigned, assigned.install_patches
            )
        except ValueError as error:
            enabled = policy.automatic_os_upgrade.enabled or policy.automatic_extension_upgrade.enabled
            if enabled or overlay_json(overlay) is not None:
                raise InvalidInput("InvalidSpec", str(error)) from None
            return None  # nothing automatic asked for; the template's own problem shows elsewhere

    def store(self, snapshot: Snapshot, package: Package, write: Any) -> bool:
        """Store the package's overlay when it changed, between upgrades; True when it was written.

        `write` is the pass's guarded status write. The revision is made from the stored overlay on
        the next pass, so an operator killed in between makes the same revision.
        """
        if snapshot.upgrade.get("locked"):
            return False
        before = stored_overlay(snapshot.scaleset)
        if package.overlay == before:
            return False
        write(snapshot, {"automaticUpdates": overlay_json(package.overlay)})
        if package.included:
            what = ", ".join(_describe(update) for update in package.included)
            self.events.normal(snapshot.scaleset, "UpdatesPackaged", f"One update per instance: {what}.")
        return True

    def pending(self, package: Package | None, snapshot: Snapshot | None = None) -> list[dict[str, Any]]:
        """status.pendingUpdates: each update not running yet, with what it waits for: those the catalog
        offers, and those a roll-out is bringing that not every instance runs yet (with the roll-out's
        reason). Call it after the roll-out's step, so that status.upgrade says where it stands."""
        if package is None:
            return []
        waiting = {(update.kind, update.name): gate for update, gate in package.waiting}
        result = []
        for update in [*self._rolling_out(snapshot), *package.pending]:
            gate = waiting.get((update.kind, update.name))
            item = update if gate is None else update.model_copy(update={"waiting_for": gate.message})
            result.append(item.model_dump(by_alias=True, exclude_none=True))
        return result

    def _rolling_out(self, snapshot: Snapshot | None) -> list[PendingUpdate]:
        upgrade = snapshot.upgrade if snapshot is not None else {}
        if snapshot is None or not upgrade.get("locked") or upgrade.get("rollback") or upgrade.get("restart"):
            return []
        source = snapshot.template_of(snapshot.current_revision)
        target = snapshot.template_of(snapshot.update_revision)
        if source is None or target is None or source is target:
            return []
        where = " ".join(
            part
            for part in (
                f"{upgrade.get('reason')}:" if upgrade.get("reason") else "",
                upgrade.get("message") or "",
            )
            if part
        )
        why = f"In the roll-out to {snapshot.update_revision}, not on every instance yet" + (
            f"; {where}" if where else "."
        )
        return [
            update.model_copy(update={"waiting_for": why})
            for update in rolling_out(source, target, self.catalog(snapshot) or Catalog())
        ]

    # ------------------------------------------------------------------ scaleset upgrade

    def consume_upgrade_request(self, snapshot: Snapshot, now: datetime, write: Any) -> bool:
        """The `scaleset upgrade` annotation, consumed once; True when there was one.

        The OS version asked for (the newest published when none is named) goes into the overlay with
        reason ManualUpgrade, so its roll-out is never gated by an OSImage window; the answer goes to
        status.upgrade.lastAction. Status is written (guarded by `write`) before the annotation is removed.
        """
        annotations = snapshot.scaleset["metadata"].get("annotations") or {}
        if ANNOTATION_OS_UPGRADE not in annotations:
            return False
        asked = str(annotations[ANNOTATION_OS_UPGRADE] or "").strip()
        overlay, message = self._requested(snapshot, "" if asked in ("", "latest") else asked, now)
        status: dict[str, Any] = {
            "upgrade": {
                "lastAction": {
                    "action": "OSUpgrade",
                    "result": "Refused" if overlay is None else "Accepted",
                    "reason": MANUAL_UPGRADE,
                    "message": message,
                    "at": timestamp(now),
                }
            }
        }
        if overlay is not None:
            status["automaticUpdates"] = overlay_json(overlay)
        write(snapshot, status)
        try:
            updated = self.kube.patch(
                fleet_path("scalesets", snapshot.namespace, snapshot.name),
                {"metadata": {"annotations": {ANNOTATION_OS_UPGRADE: None}}},
            )
            snapshot.scaleset["metadata"] = updated["metadata"]
        except ApiError as error:
            if error.status != 404:
                raise
        if overlay is None:
            self.events.warning(snapshot.scaleset, "OSUpgradeRefused", message)
        else:
            self.events.normal(snapshot.scaleset, "OSUpgradeRequested", message)
        return True

    def _requested(
        self, snapshot: Snapshot, version: str, now: datetime
    ) -> tuple[AutomaticUpdatesStatus | None, str]:
        """The overlay with the OS version asked for, and the answer; no overlay when it is refused."""
        if snapshot.upgrade.get("locked"):
            return None, "An upgrade is running; ask again once it has finished."
        overlay = stored_overlay(snapshot.scaleset)
        running = base_template(snapshot.spec.template, prune(overlay, snapshot.spec.template))
        try:
            resolution = requested_os_image(
                snapshot.spec, running, self.catalog(snapshot) or Catalog(), version, now
            )
        except ValueError as error:
            return None, str(error)
        if resolution.release is None:
            return None, resolution.message
        chosen = choose(overlay, snapshot.spec.template, [resolution], now, reason=MANUAL_UPGRADE)
        if chosen.os_image is None or chosen.os_image.version != resolution.release.version:
            return None, f"{resolution.image} is not newer than the image spec.template names."
        if chosen == overlay:
            return None, f"The OS container runs {resolution.image} already."
        return chosen, f"Upgrading the OS container to {resolution.image}: {resolution.message}"

    # ------------------------------------------------------------------ during a roll-out

    def rollout_scopes(self, snapshot: Snapshot) -> RolloutScopes:
        """The automatic scopes of the roll-out from the current to the update revision; during a rollback,
        those of the roll-out it undoes, so that it goes under the same policy."""
        rollback = snapshot.upgrade.get("rollback") if snapshot.upgrade.get("locked") else None
        before, after = snapshot.current_revision, snapshot.update_revision
        if rollback:
            before, after = rollback.get("toRevision"), rollback.get("fromRevision")
        current = snapshot.revisions.get(before or "")
        update = snapshot.revisions.get(after or "")
        if current is None or update is None or current is update:
            return RolloutScopes(frozenset(), user_changed=False)
        scopes = automatic_scopes(_template(current), _template(update))
        manual = overlay_of(_template(update)).os_image
        if manual is not None and manual.reason == MANUAL_UPGRADE:
            scopes = scopes - {MaintenanceScope.OS_IMAGE}
        return RolloutScopes(scopes, user_changed=spec_revision_of(current) != spec_revision_of(update))

    def adjust_policy(self, snapshot: Snapshot, scopes: RolloutScopes) -> None:
        """Automatic work rolls in batches of at most 20 % of the instances (at least one), whatever the
        mode; a roll-out the user's template change is part of keeps the user's policy."""
        if scopes.gated:
            snapshot.policy = automatic_work_policy(snapshot.policy)

    def gate(
        self, snapshot: Snapshot, scopes: RolloutScopes, assigned: AssignedMaintenance, now: datetime
    ) -> GateDecision | None:
        """Before a new batch of a roll-out that carries automatic work: may it start now?"""
        if not scopes.gated:
            return None
        update = snapshot.template_of(snapshot.update_revision) or {}
        return gate_package_batch(
            assigned, scopes.scopes, snapshot.spec.time_zone, now, _published(overlay_of(update))
        )

    # ------------------------------------------------------------------ rollback

    def rollback_wanted(self, snapshot: Snapshot, from_revision: str | None, to_revision: str | None) -> bool:
        """A breach of an automatic roll-out rolls it back, unless the policy disables it."""
        source, target = (
            snapshot.revisions.get(from_revision or ""),
            snapshot.revisions.get(to_revision or ""),
        )
        if source is None or target is None or spec_revision_of(source) != spec_revision_of(target):
            return False  # the user's template changed: the user's roll-out follows the user's policy
        disabled = snapshot.policy.automatic_os_upgrade.disable_automatic_rollback
        return automatic_rollback_wanted(disabled, _template(target), _template(source))

    def after_rollback(
        self, snapshot: Snapshot, from_revision: str | None, to_revision: str | None, now: datetime
    ) -> dict[str, Any] | None:
        """status.automaticUpdates once a rollback from `to_revision` back to `from_revision` started:
        the restored revision's overlay, with the undone versions and patches never chosen again."""
        restored = snapshot.template_of(from_revision)
        undone = snapshot.template_of(to_revision)
        if restored is None or undone is None:
            return None
        gone = rolled_back_by(undone, restored)
        if not gone.rolled_back and not gone.failed_patch_ids:
            return None  # the rollback undoes no automatic choice: status.automaticUpdates stays
        overlay = overlay_after_rollback(
            stored_overlay(snapshot.scaleset), snapshot.spec.template, undone, restored, now
        )
        return overlay_json(overlay)


def _template(stored: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = (stored.get("data") or {}).get("template") or {}
    return template


def _published(overlay: AutomaticUpdatesStatus) -> list[PendingUpdate]:
    """The overlay's entries as pending updates with their publication times: what maxDeferral counts from."""
    entries: list[tuple[str, str, Any]] = []
    if overlay.os_image is not None:
        entries.append(("OSImage", str(MaintenanceScope.OS_IMAGE), overlay.os_image))
    entries.extend(("Extension", str(MaintenanceScope.EXTENSION), entry) for entry in overlay.extensions)
    return [
        PendingUpdate(
            kind=kind, name=entry.repository, version=entry.version, since=entry.published_at, scope=scope
        )
        for kind, scope, entry in entries
        if entry.published_at
    ]


def _describe(update: PendingUpdate) -> str:
    version = f" {update.version}" if update.version else ""
    return f"{update.kind} {update.name}{version}".replace("docker.io/library/", "")
