"""PATCH of an object: JSON patch, merge patch, strategic merge patch and server-side apply (which creates
the object when it is absent), the patched object then written through the store's update semantics."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, bad_request, invalid, name_mismatch, not_found
from kubesim.store import (
    PATCH_APPLY,
    PATCH_JSON,
    PATCH_MERGE,
    PATCH_STRATEGIC,
    PATCH_TYPES,
    meta_of,
    optional,
)
from kubesim.verbs.create import create

if TYPE_CHECKING:
    from kubesim.resources import ResourceType
    from kubesim.store import Store, Warnings


def patch(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    patch_type: str,
    patch: Any,
    *,
    subresource: str | None = None,
    field_manager: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    field_validation: str | None = None,
    warnings: Warnings | None = None,
) -> dict[str, Any]:
    """Patch an object with one of the four patch types (server-side apply creates when absent)."""
    patching = optional("patch")
    if patching is None:
        raise ApiError(415, "UnsupportedMediaType", "patching is not available in this kubesim build")
    if patch_type == PATCH_APPLY:
        if not field_manager:
            raise bad_request("PATCH requests with the apply content type require fieldManager to be set")
        if not isinstance(patch, dict):
            raise bad_request("the apply patch must be an object")
    with store.lock:
        current = store.get_raw(rt, namespace, name) if store.exists(rt, namespace, name) else None
        if current is None:
            if patch_type != PATCH_APPLY or subresource:
                raise not_found(rt.plural, name, rt.group)
            applied = copy.deepcopy(patch)
            store.check_kind(rt, applied)
            pmeta = meta_of(applied)
            if pmeta.get("name") not in (None, name):
                raise name_mismatch(pmeta.get("name"), name)
            pmeta["name"] = name
            created = patching.apply_server_side(
                None, applied, field_manager, force, rt.kind, schema=rt.schema
            )
            return create(
                store,
                rt,
                namespace,
                created,
                dry_run=dry_run,
                field_validation=field_validation,
                warnings=warnings,
            )
        live = copy.deepcopy(store.present(rt, current))
        if patch_type == PATCH_JSON:
            if not isinstance(patch, list):
                raise bad_request("json patch must be a list of operations")
            new = patching.apply_json_patch(live, patch)
        elif patch_type == PATCH_MERGE:
            if not isinstance(patch, dict):
                raise bad_request("merge patch must be an object")
            new = patching.apply_merge_patch(live, patch)
        elif patch_type == PATCH_STRATEGIC:
            if rt.is_custom:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{PATCH_JSON}, {PATCH_MERGE}, {PATCH_APPLY}",
                )
            if not isinstance(patch, dict):
                raise bad_request("strategic merge patch must be an object")
            new = patching.apply_strategic_merge_patch(live, patch, rt.kind)
        elif patch_type == PATCH_APPLY:
            applied = copy.deepcopy(patch)
            store.check_kind(rt, applied)
            new = patching.apply_server_side(live, applied, field_manager, force, rt.kind, schema=rt.schema)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(PATCH_TYPES)}",
            )
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        nmeta = meta_of(new)
        if nmeta.get("name") != name:
            raise invalid(
                rt.kind, name, [Cause("metadata.name", "Invalid value: field is immutable")], rt.group
            )
        if not nmeta.get("resourceVersion"):
            nmeta["resourceVersion"] = current["metadata"]["resourceVersion"]
        store.check_kind(rt, new)
        manager = None if patch_type == PATCH_APPLY else field_manager
        result = store.replace(
            rt,
            current,
            new,
            subresource=subresource,
            dry_run=dry_run,
            field_validation=field_validation,
            warnings=warnings,
            field_manager=manager,
        )
    store.after_write()
    return result
