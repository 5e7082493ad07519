"""The scale subresource (GET, PUT and PATCH of `NAME/scale`): the autoscaling/v1 Scale of an object whose
type has one, and spec replicas written through it."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, conflict, invalid, not_found
from kubesim.selectors import LabelSelector
from kubesim.store import PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, optional

if TYPE_CHECKING:
    from kubesim.resources import ResourceType
    from kubesim.store import Store


def get_scale(store: Store, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
    """The autoscaling/v1 Scale of an object whose type has a scale subresource."""
    if rt.scale is None:
        raise not_found(f"{rt.plural}/scale", name, rt.group)
    with store.lock:
        obj = store.get_raw(rt, namespace, name)
        return _scale_of(rt, obj)


def update_scale(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    scale: dict[str, Any],
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Set spec replicas through the scale subresource; returns the resulting Scale."""
    if rt.scale is None:
        raise not_found(f"{rt.plural}/scale", name, rt.group)
    replicas = scale.get("spec", {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(
            "Scale",
            name,
            [Cause("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")],
            "autoscaling",
        )
    with store.lock:
        current = store.get_raw(rt, namespace, name)
        wanted_rv = scale.get("metadata", {}).get("resourceVersion")
        if wanted_rv and str(wanted_rv) != current["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        new = copy.deepcopy(store.present(rt, current))
        _set_path(new, rt.scale.spec_replicas_path, replicas)
        store.replace(rt, current, new, dry_run=dry_run)
        result = _scale_of(rt, store.get_raw(rt, namespace, name) if not dry_run else new)
    store.after_write()
    return result


def patch_scale(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    patch_type: str,
    patch: Any,
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Patch the Scale object (as `kubectl scale` does) and write the result back."""
    patching = optional("patch")
    if patching is None:
        raise ApiError(415, "UnsupportedMediaType", "patching is not available in this kubesim build")
    with store.lock:
        scale = get_scale(store, rt, namespace, name)
        if patch_type == PATCH_JSON:
            new = patching.apply_json_patch(scale, patch)
        elif patch_type in (PATCH_MERGE, PATCH_STRATEGIC):
            new = patching.apply_merge_patch(scale, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type for scale: {patch_type}")
        return update_scale(store, rt, namespace, name, new, dry_run=dry_run)


def _split_path(path: str) -> list[str]:
    return [p for p in path.strip().lstrip(".").split(".") if p]


def _get_path(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in _split_path(path):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = _split_path(path)
    target = obj
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            target[part] = nxt
        target = nxt
    target[parts[-1]] = value


def _scale_of(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    assert rt.scale is not None
    meta = obj["metadata"]
    spec_replicas = _get_path(obj, rt.scale.spec_replicas_path)
    status_replicas = _get_path(obj, rt.scale.status_replicas_path)
    status: dict[str, Any] = {"replicas": int(status_replicas) if isinstance(status_replicas, int) else 0}
    if rt.scale.label_selector_path:
        selector = _get_path(obj, rt.scale.label_selector_path)
        if isinstance(selector, dict):
            selector = str(LabelSelector.from_object(selector))
        if isinstance(selector, str) and selector:
            status["selector"] = selector
    scale_meta = {
        k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
    }
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": int(spec_replicas) if isinstance(spec_replicas, int) else 0},
        "status": status,
    }
