"""PodDisruptionBudgets: their status as kube-controller-manager's disruption controller computes it, and
pods/eviction as the API server answers it.

The controller (`DisruptionController`) watches the store's changes to pods, budgets and anything with a
scale subresource, and recomputes each budget of the namespace: the pods it selects (a null selector
selects none, an empty one every pod of the namespace), how many are healthy (Ready, not being deleted, not evicted in the last two minutes),
the expected count (the pods themselves for an integer minAvailable, else the replicas of their
controllers, read through the scale subresource), desiredHealthy, disruptionsAllowed and the
DisruptionAllowed condition; a selected pod without a known controller fails the sync safe (no
disruption allowed, reason SyncFailed), as the real controller does.

`evict` is the eviction subresource: a finished, pending or terminating pod is deleted without
consulting any budget; otherwise the one budget that selects the pod must allow a disruption (429
TooManyRequests with a DisruptionBudget cause when it does not, 500 when several select it), a
not-Ready pod may go while the budget is met (IfHealthyBudget) or always (AlwaysAllow), and the
eviction records the pod in the budget's disruptedPods. The delete carries the request's
preconditions, and a resourceVersion precondition of its own when the pod is not finished.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, bad_request
from kubesim.selectors import LabelSelector

if TYPE_CHECKING:
    from kubesim.store import Store
    from kubesim.watch import Change

# How long an eviction's entry in disruptedPods keeps its pod out of currentHealthy (the controller's
# DeletionTimeout).
DELETION_TIMEOUT = dt.timedelta(minutes=2)
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
DISRUPTION_ALLOWED = "DisruptionAllowed"
MORE_THAN_ONE_BUDGET = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)
_PDB_KEY = ("policy", "poddisruptionbudgets")
_POD_KEY = ("", "pods")


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def selector_of(pdb: dict[str, Any]) -> LabelSelector | None:
    """The budget's selector; None selects nothing. policy/v1: "A null selector will match no pods,
    while an empty ({}) selector will select all pods within the namespace"."""
    selector = (pdb.get("spec") or {}).get("selector")
    return None if selector is None else LabelSelector.from_object(selector)


def selects(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Whether the budget covers the pod."""
    if (pdb["metadata"].get("namespace") or "") != (pod["metadata"].get("namespace") or ""):
        return False
    selector = selector_of(pdb)
    return selector is not None and selector.matches(pod["metadata"].get("labels"))


def _what_counts(pod: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What of a pod a budget's status depends on: its labels, readiness, deletion and controller."""
    if pod is None:
        return None
    meta = pod.get("metadata") or {}
    controller = next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    labels = tuple(sorted((meta.get("labels") or {}).items()))
    return (labels, is_ready(pod), bool(meta.get("deletionTimestamp")), controller)


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


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


class DisruptionController:
    """Keeps the status of every PodDisruptionBudget in step with its pods, as kube-controller-manager."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def observe(self, change: Change) -> None:
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
        budgets = self.store.list(budgets_type, namespace, copy_items=False).items
        if not budgets:
            return
        pods = self.store.list(self.store.type("pods"), namespace, copy_items=False).items
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
                self.store.update(
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
            status["conditions"] = _condition(previous, False, "SyncFailed", str(error), generation, now)
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
        status["conditions"] = _allowed_condition(previous, allowed, generation, now)
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
        from kubesim.verbs.scale import get_scale  # it imports kubesim.store, which imports this module

        try:
            scale = get_scale(self.store, rt, namespace, str(ref.get("name") or ""))
        except ApiError:
            return None
        if scale["metadata"].get("uid") != ref.get("uid"):
            return None
        return int(scale["spec"].get("replicas") or 0)


def _condition(
    previous: dict[str, Any], allowed: bool, reason: str, message: str, generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    """The conditions with DisruptionAllowed set as apimeta.SetStatusCondition sets it: the transition
    time moves only when the status flips."""
    status = "True" if allowed else "False"
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == DISRUPTION_ALLOWED), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else _rfc3339(now)
    condition: dict[str, Any] = {
        "type": DISRUPTION_ALLOWED,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation:
        condition["observedGeneration"] = generation
    others = [c for c in previous.get("conditions") or [] if c.get("type") != DISRUPTION_ALLOWED]
    return [*others, condition]


def _allowed_condition(
    previous: dict[str, Any], allowed: int, generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    """DisruptionAllowed, as the component helpers' UpdateDisruptionAllowedCondition sets it."""
    reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
    return _condition(previous, allowed > 0, reason, "", generation, now)


# --------------------------------------------------------------------------- pods/eviction


def _can_ignore_budgets(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def _enforce_resource_version(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def too_many_requests(message: str, retry_after: int | None = None) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        causes=[Cause("", message, DISRUPTION_BUDGET_CAUSE)],
        retry_after_seconds=retry_after,
    )


def evict(store: Store, namespace: str, name: str, eviction: dict[str, Any], dry_run: bool) -> None:
    """POST pods/NAME/eviction, as the API server's EvictionREST.Create; raises the refusals it answers.

    The caller holds the store's lock, so that checking the budget, recording the disruption and
    deleting the pod happen as one step.
    """
    if (eviction.get("metadata") or {}).get("name") != name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = copy.deepcopy(eviction.get("deleteOptions") or {})
    if dry_run or "All" in (options.get("dryRun") or []):
        dry_run = True
    preconditions = dict(options.get("preconditions") or {})
    pods = store.type("pods")
    pod = store.get(pods, namespace, name)
    grace = options.get("gracePeriodSeconds")

    from kubesim.verbs.deletion import delete as delete_object  # it imports this module

    def delete(with_version: bool) -> None:
        wanted = dict(preconditions)
        if with_version and not wanted.get("resourceVersion"):
            wanted["resourceVersion"] = pod["metadata"]["resourceVersion"]
        delete_object(
            store,
            pods,
            namespace,
            name,
            preconditions=wanted,
            grace_period_seconds=grace,
            propagation_policy=options.get("propagationPolicy"),
            dry_run=dry_run,
        )

    if _can_ignore_budgets(pod):
        delete(with_version=_enforce_resource_version(pod))
        return
    budgets_type = store.type("poddisruptionbudgets")
    budgets = [b for b in store.list(budgets_type, namespace, copy_items=False).items if selects(b, pod)]
    if len(budgets) > 1:
        raise ApiError(500, "", MORE_THAN_ONE_BUDGET)
    if not budgets:
        delete(with_version=False)
        return
    pdb = budgets[0]
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    pdb_name = pdb["metadata"]["name"]
    if not is_ready(pod):
        current, desired = int(status.get("currentHealthy") or 0), int(status.get("desiredHealthy") or 0)
        if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow" or (current >= desired and desired > 0):
            # A pod that is not Ready does not count as healthy: it goes without using up the budget.
            delete(with_version=True)
            return
    if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 1):
        raise too_many_requests(
            f"The disruption budget {pdb_name} is still being processed by the server.", 10
        )
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise ApiError(
            403,
            "Forbidden",
            f'poddisruptionbudgets.policy "{pdb_name}" is forbidden: pdb disruptions allowed is negative',
            kind="poddisruptionbudgets",
            name=pdb_name,
            group="policy",
        )
    if allowed == 0:
        raise too_many_requests(
            f"The disruption budget {pdb_name} needs {int(status.get('desiredHealthy') or 0)} healthy pods "
            f"and has {int(status.get('currentHealthy') or 0)} currently"
        )
    if not dry_run:
        decremented = copy.deepcopy(pdb)
        new_status = decremented.setdefault("status", {})
        new_status["disruptionsAllowed"] = allowed - 1
        if allowed - 1 == 0:
            observed = int(status.get("observedGeneration") or 0)
            new_status["conditions"] = _allowed_condition(status, 0, observed, store.clock())
        new_status.setdefault("disruptedPods", {})[name] = _rfc3339(store.clock())
        store.update(budgets_type, namespace, pdb_name, decremented, subresource="status")
    delete(with_version=False)
