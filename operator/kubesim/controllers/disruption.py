"""The disruption controller: the status of every PodDisruptionBudget, as kube-controller-manager's
computes it.

It follows every change the store commits (its `changed` hook) to pods, budgets and anything with a
scale subresource, and recomputes each budget of the namespace: the pods it selects (a null selector
selects none, an empty one every pod of the namespace), how many are healthy (Ready, not being deleted,
not evicted in the last two minutes), the expected count (the pods themselves for an integer
minAvailable, else the replicas of their controllers, read through the scale subresource),
desiredHealthy, disruptionsAllowed and the DisruptionAllowed condition; a selected pod without a known
controller fails the sync safe (no disruption allowed, reason SyncFailed), as the real controller does.
The eviction subresource that reads these budgets is `kubesim.disruption`.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import math
from collections.abc import Iterable
from typing import Any

from kubesim.disruption import allowed_condition, disruption_condition, is_ready, selector_of
from kubesim.errors import ApiError
from kubesim.listing import list_objects
from kubesim.store import Controller
from kubesim.verbs.scale import get_scale
from kubesim.verbs.update import update
from kubesim.watch import Change

# How long an eviction's entry in disruptedPods keeps its pod out of currentHealthy (the controller's
# DeletionTimeout).
DELETION_TIMEOUT = dt.timedelta(minutes=2)
_PDB_KEY = ("policy", "poddisruptionbudgets")
_POD_KEY = ("", "pods")


def _parse(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _what_counts(pod: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What of a pod a budget's status depends on: its labels, readiness, deletion and controller."""
    if pod is None:
        return None
    meta = pod.get("metadata") or {}
    controller = next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    labels = tuple(sorted((meta.get("labels") or {}).items()))
    return (labels, is_ready(pod), bool(meta.get("deletionTimestamp")), controller)


def scaled(value: Any, total: int, round_up: bool) -> int:
    """An int-or-string: an integer as it is, or a percentage of `total` (intstr's GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%") or not text[:-1].isdigit():
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {text}")
    share = int(text[:-1]) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


class _NoController(Exception):
    pass


class DisruptionController(Controller):
    """Keeps the status of every PodDisruptionBudget in step with its pods, as kube-controller-manager."""

    def changed(self, change: Change) -> None:
        """Called for every write: a change to a pod, a budget or a scalable object resyncs its namespace."""
        namespace = change.obj.get("metadata", {}).get("namespace")
        if not namespace:
            return
        if change.storage_key != _PDB_KEY:
            if not self.store.holds_any(_PDB_KEY, namespace):
                return  # no budget to keep: the common case costs nothing
            if change.storage_key == _POD_KEY:
                after = None if change.type == "DELETED" else change.obj
                if _what_counts(change.old) == _what_counts(after):
                    return  # a status write that changes nothing a budget counts
            else:
                rt = self.store.type_for_storage(change.storage_key)
                if rt is None or rt.scale is None:
                    return
                if change.type == "MODIFIED" and (change.old or {}).get("spec") == change.obj.get("spec"):
                    return  # its replicas are in its spec: a status write changes no expected count
        self.store.queue(functools.partial(self.sync, namespace), once=("disruption", namespace))

    def sync(self, namespace: str) -> None:
        budgets_type = self.store.type("poddisruptionbudgets")
        # Read-only views of the stored objects (no copies): a sync runs after every change of the namespace.
        budgets = list_objects(self.store, budgets_type, namespace, copy_items=False).items
        if not budgets:
            return
        pods = list_objects(self.store, self.store.type("pods"), namespace, copy_items=False).items
        now = self.store.clock()
        for pdb in budgets:
            selector = selector_of(pdb)
            if pdb["metadata"].get("deletionTimestamp"):
                continue
            selected = (
                [] if selector is None else [p for p in pods if selector.matches(p["metadata"].get("labels"))]
            )
            status = self.status_of(pdb, selected, now)
            if status != (pdb.get("status") or {}):
                update(
                    self.store,
                    budgets_type,
                    namespace,
                    pdb["metadata"]["name"],
                    {**pdb, "status": status},
                    subresource="status",
                )

    def status_of(self, pdb: dict[str, Any], pods: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
        """The budget's status for the pods it selects, at `now`."""
        previous = pdb.get("status") or {}
        try:
            expected, desired = self._expected(pdb, pods)
        except (_NoController, ValueError) as error:
            # failSafe: nothing may be disrupted until the budget can be computed.
            status = copy.deepcopy(previous)
            status["disruptionsAllowed"] = 0
            generation = int(previous.get("observedGeneration") or 0)
            status["conditions"] = disruption_condition(
                previous, False, "SyncFailed", str(error), generation, now
            )
            for key in ("currentHealthy", "desiredHealthy", "expectedPods"):
                status.setdefault(key, 0)
            return status
        recorded = previous.get("disruptedPods") or {}
        disrupted: dict[str, str] = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp") or name not in recorded:
                continue
            when = _parse(recorded[name])
            if when is not None and when + DELETION_TIMEOUT > now:
                disrupted[name] = recorded[name]
        healthy = sum(
            1
            for pod in pods
            if not pod["metadata"].get("deletionTimestamp")
            and pod["metadata"]["name"] not in disrupted
            and is_ready(pod)
        )
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        generation = int(pdb["metadata"].get("generation") or 1)
        status = {
            "observedGeneration": generation,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        status["conditions"] = allowed_condition(previous, allowed, generation, now)
        return status

    def _expected(self, pdb: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[int, int]:
        """(expectedPods, desiredHealthy), as the controller's getExpectedPodCount."""
        spec = pdb.get("spec") or {}
        max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
        if max_unavailable is not None:
            expected = self._expected_scale(pods)
            return expected, max(0, expected - scaled(max_unavailable, expected, round_up=True))
        if isinstance(min_available, int):
            return len(pods), min_available
        if min_available is not None:
            expected = self._expected_scale(pods)
            return expected, scaled(min_available, expected, round_up=True)
        return 0, 0

    def _expected_scale(self, pods: Iterable[dict[str, Any]]) -> int:
        """The replicas of the pods' controllers, each counted once; pods without a controller are left out."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if ref is None or ref.get("uid") in scales:
                continue
            replicas = self._replicas_of(ref, pod["metadata"].get("namespace") or "")
            if replicas is None:
                raise _NoController(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            scales[str(ref.get("uid"))] = replicas
        return sum(scales.values())

    def _replicas_of(self, ref: dict[str, Any], namespace: str) -> int | None:
        group, _, version = str(ref.get("apiVersion") or "").rpartition("/")
        rt = self.store.registry.by_kind(group, version, str(ref.get("kind") or ""))
        if rt is None or rt.scale is None:
            return None
        try:
            scale = get_scale(self.store, rt, namespace, str(ref.get("name") or ""))
        except ApiError:
            return None
        if scale["metadata"].get("uid") != ref.get("uid"):
            return None
        return int(scale["spec"].get("replicas") or 0)
