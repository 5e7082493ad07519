"""The one place that writes a ScaleSet's status, as StatefulSet keeps it in stateful_set_status_updater.go.

A pass writes status in two kinds of write, in this order:

- `record`: the write-ahead record of what the pass is about to do (a batch in `status.upgrade`, an
  action's answer, a repair, a Host batch, a staged step, a stored package), before it touches anything.
  It is a decision made from what the pass read, so it is guarded by the resourceVersion the pass read
  or last wrote and never retried: a 409 means someone changed the ScaleSet since, and the pass ends
  (`Conflict`) for the next one to decide again. So the batch recorded in status is a lock that two
  operators cannot both take.
- `write`: the status last, once the pass has acted: counts, revisions, conditions. It is what the pass
  saw and did, so on a 409 it is read again and, when nobody wrote the status since (another writer
  changed only metadata or spec: kopf's annotations, a user's edit), the same change is applied again
  with the new resourceVersion, as `RetryOnConflict` does; when the status changed, the pass ends.

Both keep the snapshot in step with what the API server answered. A ScaleSet deleted during the pass
answers 404: that is `ScaleSetGone`, and the pass ends without another write. `report` writes the
conditions of a pass that could not do its work (a refusal): computed from the object as read, with
no resourceVersion, and a ScaleSet gone is nothing to report to.
"""

from __future__ import annotations

import copy
from typing import Any

from scaleset_operator.control.context import Conflict, Snapshot, merge_patch
from scaleset_operator.control.kube import ApiError, Kube, fleet_path
from scaleset_operator.control.reader import Reader

# How many times the final status is applied again after a 409 (client-go's DefaultRetry has 5 steps).
WRITE_ATTEMPTS = 5


class ScaleSetGone(Exception):
    """The ScaleSet was deleted while the pass ran: nothing more is written, and its loop ends."""


class StatusUpdater:
    """Writes `status` of ScaleSets: the write-ahead record, the final status, a refusal's conditions."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.reader = Reader(kube)

    def record(self, snapshot: Snapshot, status: dict[str, Any]) -> None:
        """Merge-patch `status` before acting on it, only if nobody changed the ScaleSet since this
        pass read it (or last wrote it); otherwise the pass ends with Conflict."""
        self._patch(snapshot, status, attempts=1)

    def write(self, snapshot: Snapshot, status: dict[str, Any]) -> bool:
        """Write the status the pass computed, as the change from the status last read; True when
        something changed. A 409 with the status unchanged since is applied again (see the module)."""
        patch = merge_patch(snapshot.stored_status, status)
        if not patch:
            return False
        self._patch(snapshot, patch, attempts=WRITE_ATTEMPTS)
        return True

    def report(self, scaleset: dict[str, Any], status: dict[str, Any]) -> None:
        """Write the conditions of a refused pass onto `scaleset` (no resourceVersion: they are computed
        from the object as read, and nothing is decided from them); a ScaleSet gone is left alone."""
        try:
            self._send(scaleset, {"status": status})
        except ScaleSetGone:
            return

    def _patch(self, snapshot: Snapshot, status: dict[str, Any], attempts: int) -> None:
        for attempt in range(1, attempts + 1):
            body = {"metadata": {"resourceVersion": snapshot.resource_version}, "status": status}
            try:
                updated = self._send(snapshot.scaleset, body)
            except ApiError as error:
                if error.status != 409:
                    raise
                if attempt == attempts or not self._status_unchanged(snapshot):
                    raise Conflict(str(error)) from None
                continue
            snapshot.scaleset["status"] = updated.get("status") or {}
            snapshot.scaleset["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
            snapshot.stored_status = copy.deepcopy(snapshot.scaleset["status"])
            return

    def _status_unchanged(self, snapshot: Snapshot) -> bool:
        """Read the ScaleSet again; True (taking its resourceVersion) when its status is still the one
        this pass last read or wrote."""
        fresh = self.reader.scaleset(snapshot.namespace, snapshot.name)
        if fresh is None:
            raise ScaleSetGone(f"{snapshot.namespace}/{snapshot.name}")
        if (fresh.get("status") or {}) != snapshot.stored_status:
            return False
        snapshot.scaleset["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
        return True

    def _send(self, scaleset: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        metadata = scaleset["metadata"]
        path = fleet_path("scalesets", metadata["namespace"], metadata["name"], "status")
        try:
            return self.kube.patch(path, body)
        except ApiError as error:
            if error.status == 404:
                raise ScaleSetGone(f"{metadata['namespace']}/{metadata['name']}") from None
            raise
