"""Pod binding (POST `pods/NAME/binding`): what a scheduler does, since spec.nodeName may not be set by an
ordinary update."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, invalid
from kubesim.store import set_condition

if TYPE_CHECKING:
    from kubesim.store import Store


def bind_pod(store: Store, namespace: str, name: str, node: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Assign a pod to a node (POST pods/binding); 409 if it is already assigned."""
    pods = store.registry.get("", "v1", "pods")
    assert pods is not None
    if not node:
        raise invalid("Binding", name, [Cause("target.name", "Required value", "FieldValueRequired")])
    with store.lock:
        current = store.get_raw(pods, namespace, name)
        assigned = current.get("spec", {}).get("nodeName")
        if assigned:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned '
                f'to node "{assigned}"',
                kind="pods/binding",
                name=name,
            )
        if current["metadata"].get("deletionTimestamp"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being deleted',
            )
        new = copy.deepcopy(current)
        new["spec"]["nodeName"] = node
        set_condition(new, "PodScheduled", "True", "", "", store.clock)
        for cond in new["status"]["conditions"]:
            if cond["type"] == "PodScheduled":
                cond.pop("reason", None)
                cond.pop("message", None)
                cond["lastProbeTime"] = None
        if dry_run:
            return new
        store.commit(pods, new, current)
        result = copy.deepcopy(new)
    store.after_write()
    return result
