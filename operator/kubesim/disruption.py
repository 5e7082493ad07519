"""PodDisruptionBudgets: which pods a budget selects and its DisruptionAllowed condition (shared with the
disruption controller, `kubesim.controllers.disruption`, which keeps their status), and pods/eviction as
the API server answers it.

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
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, bad_request
from kubesim.listing import list_objects
from kubesim.selectors import LabelSelector
from kubesim.verbs.update import update

if TYPE_CHECKING:
    from kubesim.store import Store

DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
DISRUPTION_ALLOWED = "DisruptionAllowed"
MORE_THAN_ONE_BUDGET = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def disruption_condition(
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


def allowed_condition(
    previous: dict[str, Any], allowed: int, generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    """DisruptionAllowed, as the component helpers' UpdateDisruptionAllowedCondition sets it."""
    reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
    return disruption_condition(previous, allowed > 0, reason, "", generation, now)


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
    budgets = [
        b for b in list_objects(store, budgets_type, namespace, copy_items=False).items if selects(b, pod)
    ]
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
            new_status["conditions"] = allowed_condition(status, 0, observed, store.clock())
        new_status.setdefault("disruptedPods", {})[name] = _rfc3339(store.clock())
        update(store, budgets_type, namespace, pdb_name, decremented, subresource="status")
    delete(with_version=False)
