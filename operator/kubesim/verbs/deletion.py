"""DELETE of an object and of a collection, and the pods/NAME/eviction verb that deletes through budgets:
preconditions, propagation finalizers (orphan, foreground), graceful deletion of pods on a live node,
namespace and CRD termination, and the last finalizer's removal left to the controllers."""

from __future__ import annotations

import copy
import datetime as dt
from typing import TYPE_CHECKING, Any

from kubesim.disruption import evict
from kubesim.errors import ApiError, Cause, invalid, precondition_failed
from kubesim.listing import list_objects
from kubesim.resources import CRD_GROUP
from kubesim.store import (
    FINALIZER_CRD_CLEANUP,
    FINALIZER_FOREGROUND,
    FINALIZER_ORPHAN,
    now_rfc3339,
    set_condition,
)

if TYPE_CHECKING:
    from kubesim.resources import ResourceType
    from kubesim.selectors import FieldSelector, LabelSelector
    from kubesim.store import Objects, Store


def evict_pod(
    store: Store, namespace: str, name: str, eviction: dict[str, Any], *, dry_run: bool = False
) -> None:
    """Evict a pod as the API server's eviction subresource does; raises its refusals (429, 500, 409)."""
    with store.lock:
        evict(store, namespace, name, eviction, dry_run)
    store.after_write()


def delete(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    *,
    propagation_policy: str | None = None,
    preconditions: dict[str, Any] | None = None,
    grace_period_seconds: int | None = None,
    dry_run: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Delete an object; returns (its last state, whether it is gone now rather than terminating)."""
    with store.lock:
        result = delete_locked(
            store, rt, namespace, name, propagation_policy, preconditions or {}, grace_period_seconds, dry_run
        )
    store.after_write()
    return result


def delete_locked(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    propagation_policy: str | None,
    preconditions: dict[str, Any],
    grace_period_seconds: int | None,
    dry_run: bool,
) -> tuple[dict[str, Any], bool]:
    current = store.get_raw(rt, namespace, name)
    cur_meta = current["metadata"]
    if preconditions.get("uid") and preconditions["uid"] != cur_meta["uid"]:
        raise precondition_failed("UID", preconditions["uid"], cur_meta["uid"], rt.plural, name, rt.group)
    if (
        preconditions.get("resourceVersion")
        and str(preconditions["resourceVersion"]) != cur_meta["resourceVersion"]
    ):
        raise precondition_failed(
            "ResourceVersion",
            preconditions["resourceVersion"],
            cur_meta["resourceVersion"],
            rt.plural,
            name,
            rt.group,
        )
    if propagation_policy not in (None, "", "Background", "Foreground", "Orphan"):
        raise invalid(
            "DeleteOptions",
            "",
            [
                Cause(
                    "propagationPolicy",
                    f'Unsupported value: "{propagation_policy}"',
                    "FieldValueNotSupported",
                )
            ],
        )
    new = copy.deepcopy(current)
    meta = new["metadata"]
    finalizers: list[str] = list(meta.get("finalizers") or [])
    if propagation_policy == "Orphan" and FINALIZER_ORPHAN not in finalizers:
        finalizers.append(FINALIZER_ORPHAN)
    elif propagation_policy == "Foreground" and FINALIZER_FOREGROUND not in finalizers:
        finalizers.append(FINALIZER_FOREGROUND)
    if rt.storage_key == (CRD_GROUP, "customresourcedefinitions") and not meta.get("deletionTimestamp"):
        finalizers = (
            [*finalizers, FINALIZER_CRD_CLEANUP] if FINALIZER_CRD_CLEANUP not in finalizers else finalizers
        )
    grace = _grace_period(store, rt, current, grace_period_seconds)
    already_terminating = bool(cur_meta.get("deletionTimestamp"))
    if already_terminating:
        if grace == 0 and not finalizers and rt.storage_key == ("", "pods"):
            pass  # the kubelet (or a forced delete) confirms the pod is gone: remove it below
        elif rt.storage_key == ("", "pods") and grace < int(cur_meta.get("deletionGracePeriodSeconds") or 0):
            meta["deletionGracePeriodSeconds"] = grace
            meta["deletionTimestamp"] = now_rfc3339(lambda: store.clock() + dt.timedelta(seconds=grace))
            if not dry_run:
                store.commit(rt, new, current)
            return copy.deepcopy(store.present(rt, new)), False
        else:
            if not dry_run and finalizers != list(cur_meta.get("finalizers") or []):
                meta["finalizers"] = finalizers
                store.commit(rt, new, current, terminating=True)
            return copy.deepcopy(store.present(rt, new)), False
    if finalizers or grace > 0 or rt.storage_key == ("", "namespaces"):
        meta["deletionTimestamp"] = now_rfc3339(lambda: store.clock() + dt.timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        if finalizers:
            meta["finalizers"] = finalizers
        if "generation" in meta:
            meta["generation"] = int(meta["generation"]) + 1
        if rt.storage_key == ("", "namespaces"):
            new.setdefault("status", {})["phase"] = "Terminating"
        if rt.storage_key == (CRD_GROUP, "customresourcedefinitions"):
            set_condition(
                new,
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; instances are being removed",
                store.clock,
            )
        if dry_run:
            return store.present(rt, new), False
        store.commit(rt, new, current, terminating=True)
        return copy.deepcopy(store.present(rt, new)), False
    if dry_run:
        return store.present(rt, current), True
    store.commit(rt, new, current, gone=True)
    return copy.deepcopy(store.present(rt, new)), True


def _grace_period(store: Store, rt: ResourceType, obj: dict[str, Any], requested: int | None) -> int:
    """Pods bound to an existing node terminate gracefully; everything else goes at once."""
    if rt.storage_key != ("", "pods"):
        return 0
    spec = obj.get("spec", {})
    node = spec.get("nodeName")
    phase = obj.get("status", {}).get("phase")
    if not node or phase in ("Succeeded", "Failed") or store.lookup(("", "nodes"), ("", node)) is None:
        return 0
    if requested is not None:
        return max(0, int(requested))
    return int(spec.get("terminationGracePeriodSeconds", 30) or 0)


def delete_collection(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    *,
    labels: LabelSelector | None = None,
    fields: FieldSelector | None = None,
    propagation_policy: str | None = None,
    grace_period_seconds: int | None = None,
    dry_run: bool = False,
) -> Objects:
    """Delete every matching object; returns their last states."""
    items = list_objects(store, rt, namespace, labels=labels, fields=fields, copy_items=False).items
    deleted: list[dict[str, Any]] = []
    for obj in items:
        meta = obj["metadata"]
        try:
            last, _ = delete(
                store,
                rt,
                meta.get("namespace"),
                meta["name"],
                propagation_policy=propagation_policy,
                grace_period_seconds=grace_period_seconds,
                dry_run=dry_run,
            )
        except ApiError as error:
            if error.code != 404:
                raise
            continue
        deleted.append(last)
    return deleted
