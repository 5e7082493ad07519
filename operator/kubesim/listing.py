"""Lists: label and field selectors, paging with `limit` and `continue` tokens (`remainingItemCount` when
nothing filters), the resourceVersion a list is served at, and the fields each kind lets clients select on.

Lists read the store's objects under its lock; the watch log stays in the store (`Store.watch`), whose
initial events are a list.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, bad_request, gone
from kubesim.eventrules import convert_event
from kubesim.selectors import FieldSelector, LabelSelector, field_value

if TYPE_CHECKING:
    from kubesim.resources import ResourceType
    from kubesim.store import Key, Store
    from kubesim.watch import StorageKey

# Fields each built-in kind lets clients select on (as registered by the API server's field label conversions).
_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_SELECTABLE_FIELDS: dict[StorageKey, frozenset[str]] = {
    ("", "pods"): _COMMON_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    ("", "events"): _COMMON_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    ("", "nodes"): _COMMON_FIELDS | {"spec.unschedulable"},
    ("", "namespaces"): _COMMON_FIELDS | {"status.phase"},
    ("", "secrets"): _COMMON_FIELDS | {"type"},
    ("", "persistentvolumes"): _COMMON_FIELDS | {"name"},
    ("", "services"): _COMMON_FIELDS | {"spec.clusterIP", "spec.type"},
}


@dataclass
class ListResult:
    """A page of a list: the objects, the resourceVersion it was served at, and how to go on."""

    items: list[dict[str, Any]]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


def list_objects(
    store: Store,
    rt: ResourceType,
    namespace: str | None = None,
    *,
    labels: LabelSelector | None = None,
    fields: FieldSelector | None = None,
    limit: int | None = None,
    continue_token: str | None = None,
    resource_version: str | None = None,
    resource_version_match: str | None = None,
    copy_items: bool = True,
) -> ListResult:
    """Objects in key order, filtered; `limit`/`continue_token` paginate as the API server does."""
    labels = labels or LabelSelector()
    fields = fields or FieldSelector()
    check_fields(rt, fields)
    with store.lock:
        rv = store.resource_version
        if resource_version_match == "Exact" and resource_version not in (None, "", str(rv)):
            raise gone(
                f"too old resource version: {resource_version} ({rv}); "
                "kubesim serves lists at the current resource version only"
            )
        if resource_version not in (None, "", "0"):
            try:
                wanted = int(str(resource_version))
            except ValueError:
                raise bad_request(f'invalid resource version "{resource_version}"') from None
            if wanted > rv:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Timeout: Too large resource version: {wanted}, current: {rv}",
                    causes=[
                        Cause(
                            "",
                            f"Too large resource version: {wanted}, current: {rv}",
                            "ResourceVersionTooLarge",
                        )
                    ],
                    retry_after_seconds=1,
                )
        start: Key | None = None
        if continue_token:
            rv, start = _decode_continue(continue_token)
            if rv < store.log_floor:
                raise gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
        bucket = store.bucket(rt)
        ns = (namespace or None) if rt.namespaced else None
        name_pin = fields.exact_value("metadata.name")
        if name_pin is not None and ns is not None:
            candidate = bucket.get((ns, name_pin))
            keys = [(ns, name_pin)] if candidate is not None else []
        else:
            keys = sorted(k for k in bucket if ns is None or k[0] == ns)
        if start is not None:
            keys = [k for k in keys if k > start]
        items: list[dict[str, Any]] = []
        token = ""
        remaining: int | None = None
        for index, key in enumerate(keys):
            obj = bucket[key]
            meta = obj.get("metadata", {})
            if not labels.matches(meta.get("labels")):
                continue
            if not fields.empty and not fields.matches(functools.partial(field_of, rt, obj)):
                continue
            if limit and len(items) >= limit:
                token = _encode_continue(
                    rv,
                    items[-1]["metadata"]["namespace"] if rt.namespaced else "",
                    items[-1]["metadata"]["name"],
                )
                if labels.empty and fields.empty:
                    remaining = len(keys) - index
                break
            items.append(obj)
        served = [store.present(rt, o) for o in items]
        if copy_items:
            served = copy.deepcopy(served)
        return ListResult(served, rv, token, remaining)


def list_encoded(store: Store, rt: ResourceType, result: ListResult) -> Iterator[bytes]:
    """The JSON of each listed object, from the per-object cache (lists of thousands stay fast)."""
    for obj in result.items:
        yield store.encoded(rt, obj)


def field_of(rt: ResourceType, obj: dict[str, Any], path: str) -> str | None:
    """The value of a selectable field of an object, as the kind's field label conversion gives it."""
    if rt.storage_key == ("", "persistentvolumes") and path == "name":
        path = "metadata.name"
    if rt.group == "events.k8s.io":
        obj = convert_event(obj, "v1")
    if rt.storage_key == ("", "pods") and path == "spec.hostNetwork":
        return "true" if obj.get("spec", {}).get("hostNetwork") else "false"
    return field_value(obj, path)


def check_fields(rt: ResourceType, selector: FieldSelector) -> None:
    """Refuse a field selector on a field the kind does not index, as the API server does."""
    allowed = _SELECTABLE_FIELDS.get(rt.storage_key, _COMMON_FIELDS)
    if rt.crd is not None:
        version: dict[str, Any] = next(
            (v for v in rt.crd.get("spec", {}).get("versions", []) if v.get("name") == rt.version), {}
        )
        allowed = allowed | {
            str(f.get("jsonPath", "")).lstrip(".") for f in version.get("selectableFields") or []
        }
    for name in sorted(selector.fields()):
        if name not in allowed:
            known = ", ".join(f'"{field}"' for field in sorted(allowed))
            raise bad_request(f'"{name}" is not a known field selector: only {known}')


def _encode_continue(rv: int, namespace: str, name: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": [namespace, name]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, Key]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        namespace, name = raw["start"]
        return int(raw["rv"]), (str(namespace), str(name))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion") from None
