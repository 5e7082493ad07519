"""POST of an object: its namespace (which must exist and not be terminating), a name (given, or made from
`generateName`), the metadata the server sets (uid, creationTimestamp, generation), admission, the field
manager recorded, and the new object stored at its first resource version."""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING, Any

from kubesim.admission import check_namespace_open, validate_name
from kubesim.errors import Cause, already_exists, bad_request, invalid
from kubesim.store import meta_of, now_rfc3339
from kubesim.verbs.update import record_manager

if TYPE_CHECKING:
    from kubesim.resources import ResourceType
    from kubesim.store import Store, Warnings

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def create(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    body: dict[str, Any],
    *,
    dry_run: bool = False,
    field_manager: str | None = None,
    field_validation: str | None = None,
    warnings: Warnings | None = None,
) -> dict[str, Any]:
    """Create an object (POST); returns it as stored and served at `rt`."""
    with store.lock:
        obj = copy.deepcopy(body)
        store.check_kind(rt, obj)
        meta = meta_of(obj)
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns
            if not namespace:
                raise bad_request("the namespace of the object must be set")
            meta["namespace"] = namespace
            check_namespace_open(store, rt, namespace, meta.get("name") or meta.get("generateName", ""))
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    rt.kind,
                    "",
                    [
                        Cause(
                            "metadata.name",
                            "Required value: name or generateName is required",
                            "FieldValueRequired",
                        )
                    ],
                    rt.group,
                )
            meta["name"] = _generate_name(store, rt, namespace, str(meta["generateName"]))
        name = str(meta["name"])
        validate_name(rt, name)
        if store.exists(rt, namespace, name):
            raise already_exists(rt.plural, name, rt.group)
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(store.clock)
        if rt.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.status_subresource and rt.is_custom:
            obj.pop("status", None)  # create cannot set the status of a custom resource
        obj = store.admission.prepare(rt, obj, None, "create", field_validation, warnings)
        obj = record_manager(rt, None, obj, field_manager, None)
        obj["apiVersion"] = rt.storage_api_version
        if dry_run:
            meta = meta_of(obj)
            meta["resourceVersion"] = str(store.resource_version)
            return store.present(rt, obj)
        store.add(rt, obj)
        result = copy.deepcopy(store.present(rt, obj))
    store.after_write()
    return result


def _generate_name(store: Store, rt: ResourceType, namespace: str | None, prefix: str) -> str:
    for _ in range(100):
        name = prefix[:58] + "".join(store.random.choice(_GENERATE_ALPHABET) for _ in range(5))
        if not store.exists(rt, namespace, name):
            return name
    raise already_exists(rt.plural, prefix, rt.group)
