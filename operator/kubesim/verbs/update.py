"""PUT of an object or of its status, and the update semantics every write of a stored object goes through
(`write`, which the store's `replace` runs for PATCH, the scale subresource and the controllers):
preconditions, the status/spec split of a status subresource, the fields an update cannot change, no new
finalizers on an object being deleted, admission, the field manager recorded, the generation bump, and
the deletion an update completes once the last finalizer is gone."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kubesim.errors import Cause, bad_request, conflict, invalid, name_mismatch, precondition_failed
from kubesim.store import meta_of, optional

if TYPE_CHECKING:
    from kubesim.resources import ResourceType
    from kubesim.store import Store, Warnings


def update(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    body: dict[str, Any],
    *,
    subresource: str | None = None,
    dry_run: bool = False,
    field_manager: str | None = None,
    field_validation: str | None = None,
    warnings: Warnings | None = None,
) -> dict[str, Any]:
    """Replace an object (PUT), or its status with `subresource="status"`."""
    with store.lock:
        obj = copy.deepcopy(body)
        store.check_kind(rt, obj)
        meta = meta_of(obj)
        if meta.get("name") not in (None, name):
            raise name_mismatch(meta.get("name"), name)
        if rt.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        current = store.get_raw(rt, namespace, name)
        if not meta.get("resourceVersion") and rt.is_custom:
            raise invalid(
                rt.kind,
                name,
                [Cause("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
                rt.group,
            )
        result = write(
            store, rt, current, obj, subresource, dry_run, field_validation, warnings, field_manager
        )
    store.after_write()
    return result


def write(
    store: Store,
    rt: ResourceType,
    current: dict[str, Any],
    obj: dict[str, Any],
    subresource: str | None,
    dry_run: bool,
    field_validation: str | None,
    warnings: Warnings | None,
    field_manager: str | None = None,
) -> dict[str, Any]:
    """The update path shared by PUT and PATCH: preconditions, subresource scoping, semantics, commit.

    The caller holds the store's lock."""
    cur_meta = current["metadata"]
    meta = meta_of(obj)
    name = cur_meta["name"]
    if meta.get("resourceVersion") and str(meta["resourceVersion"]) != cur_meta["resourceVersion"]:
        raise conflict(rt.plural, name, rt.group)
    if meta.get("uid") and meta["uid"] != cur_meta["uid"]:
        raise precondition_failed("UID", meta["uid"], cur_meta["uid"], rt.plural, name, rt.group)
    old = store.present(rt, current)
    if subresource == "status":
        # A status write changes status alone (metav1.ResetObjectMetaForStatus keeps the rest).
        new = copy.deepcopy(old)
        if "status" in obj:
            new["status"] = obj["status"]
        else:
            new.pop("status", None)
        if "managedFields" in meta:
            meta_of(new)["managedFields"] = meta["managedFields"]
    else:
        new = obj
        _keep_server_fields(rt, cur_meta, meta, old, new)
    new = store.admission.prepare(
        rt, new, old, "status" if subresource == "status" else "update", field_validation, warnings
    )
    new = record_manager(rt, old, new, field_manager, subresource)
    nmeta = meta_of(new)
    if rt.tracks_generation and _spec_changed(rt, old, new):
        nmeta["generation"] = int(cur_meta.get("generation", 1)) + 1
    nmeta["resourceVersion"] = cur_meta["resourceVersion"]
    new["apiVersion"] = rt.storage_api_version
    if _same(new, current):
        return copy.deepcopy(store.present(rt, current))  # a no-op write bumps nothing and notifies nobody
    if dry_run:
        return store.present(rt, new)
    if nmeta.get("deletionTimestamp") and not nmeta.get("finalizers") and not _in_grace_period(rt, new):
        store.commit(rt, new, current, gone=True)
    else:
        store.commit(rt, new, current, updated=True)
    return copy.deepcopy(store.present(rt, new))


def _keep_server_fields(
    rt: ResourceType,
    cur_meta: dict[str, Any],
    nmeta: dict[str, Any],
    old: dict[str, Any],
    new: dict[str, Any],
) -> None:
    """What an update of the main resource cannot change: the metadata the server sets, the status of a
    status subresource, and (on an object being deleted) the finalizers it may not add."""
    name = cur_meta["name"]
    for immutable in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if immutable in cur_meta:
            nmeta[immutable] = cur_meta[immutable]
        else:
            nmeta.pop(immutable, None)
    nmeta["name"] = name
    if rt.namespaced:
        nmeta["namespace"] = cur_meta["namespace"]
    else:
        nmeta.pop("namespace", None)
    if "managedFields" not in nmeta and "managedFields" in cur_meta:
        nmeta["managedFields"] = cur_meta["managedFields"]
    if "generation" in cur_meta:
        nmeta["generation"] = cur_meta["generation"]
    else:
        nmeta.pop("generation", None)
    if rt.status_subresource:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if cur_meta.get("deletionTimestamp"):
        added = set(nmeta.get("finalizers") or []) - set(cur_meta.get("finalizers") or [])
        if added:
            raise invalid(
                rt.kind,
                name,
                [
                    Cause(
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}",
                        "FieldValueForbidden",
                    )
                ],
                rt.group,
            )


def _in_grace_period(rt: ResourceType, obj: dict[str, Any]) -> bool:
    """Pods on a live node stay until the kubelet confirms termination (delete with grace 0)."""
    return rt.storage_key == ("", "pods") and int(obj["metadata"].get("deletionGracePeriodSeconds") or 0) > 0


def record_manager(
    rt: ResourceType,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str | None,
    subresource: str | None,
) -> dict[str, Any]:
    """Track in managedFields what a non-apply write set, so later applies see who owns what."""
    patching = optional("patch")
    if not manager or patching is None or not hasattr(patching, "record_update"):
        return new
    recorded: dict[str, Any] = patching.record_update(
        old, new, manager, "Update", subresource=subresource or "", schema=rt.schema
    )
    return recorded


def _same(new: dict[str, Any], current: dict[str, Any]) -> bool:
    return new == current


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a write changes what metadata.generation counts: all but metadata (and status if separate)."""
    ignored = (
        ("metadata", "status", "apiVersion", "kind")
        if rt.status_subresource
        else ("metadata", "apiVersion", "kind")
    )
    return _without(old, *ignored) != _without(new, *ignored)


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}
