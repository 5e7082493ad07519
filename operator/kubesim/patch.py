"""PATCH semantics of the API server: JSON patch, merge patch, strategic merge patch and server-side apply."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import jsonpointer

from kubesim.errors import ApiError, Cause, bad_request

Path = tuple[str, ...]

# ---------------------------------------------------------------------------------------------------------
# Which lists merge, and by what key: the patchStrategy/patchMergeKey tags of the Kubernetes Go types.


@dataclass(frozen=True)
class MergeList:
    """A list that strategic merge patch and server-side apply merge rather than replace.

    `key` names the field that identifies an item (patchMergeKey); None means a list of scalars merged
    as a set (`patchStrategy:"merge"` on `[]string`, such as metadata.finalizers).
    """

    key: str | None


_SET = MergeList(None)

_CONTAINER_LISTS: dict[Path, MergeList] = {
    ("ports",): MergeList("containerPort"),
    ("env",): MergeList("name"),
    ("volumeMounts",): MergeList("mountPath"),
    ("volumeDevices",): MergeList("devicePath"),
}

_POD_SPEC_LISTS: dict[Path, MergeList] = {
    ("volumes",): MergeList("name"),
    ("imagePullSecrets",): MergeList("name"),
    ("hostAliases",): MergeList("ip"),
    ("topologySpreadConstraints",): MergeList("topologyKey"),
    ("schedulingGates",): MergeList("name"),
    ("resourceClaims",): MergeList("name"),
}
for _containers in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC_LISTS[(_containers,)] = MergeList("name")
    for _sub, _rule in _CONTAINER_LISTS.items():
        _POD_SPEC_LISTS[(_containers, *_sub)] = _rule

_POD_STATUS_LISTS: dict[Path, MergeList] = {
    ("conditions",): MergeList("type"),
    ("podIPs",): MergeList("ip"),
    ("hostIPs",): MergeList("ip"),
    ("resourceClaimStatuses",): MergeList("name"),
}

_OBJECT_META_LISTS: dict[Path, MergeList] = {
    ("finalizers",): _SET,
    ("ownerReferences",): MergeList("uid"),
}

_CONDITIONS: dict[Path, MergeList] = {("status", "conditions"): MergeList("type")}


def _under(prefix: Path, rules: Mapping[Path, MergeList]) -> dict[Path, MergeList]:
    return {prefix + path: rule for path, rule in rules.items()}


def _pod_template(prefix: Path) -> dict[Path, MergeList]:
    return {**_under((*prefix, "metadata"), _OBJECT_META_LISTS), **_under((*prefix, "spec"), _POD_SPEC_LISTS)}


_KIND_LISTS: dict[str, dict[Path, MergeList]] = {
    "Pod": {**_under(("spec",), _POD_SPEC_LISTS), **_under(("status",), _POD_STATUS_LISTS)},
    "PodTemplate": _pod_template(("template",)),
    "Deployment": {**_pod_template(("spec", "template")), **_CONDITIONS},
    "StatefulSet": {**_pod_template(("spec", "template")), **_CONDITIONS},
    "ReplicaSet": {**_pod_template(("spec", "template")), **_CONDITIONS},
    "DaemonSet": {**_pod_template(("spec", "template")), **_CONDITIONS},
    "Job": {**_pod_template(("spec", "template")), **_CONDITIONS},
    "CronJob": _pod_template(("spec", "jobTemplate", "spec", "template")),
    "Node": {
        ("spec", "podCIDRs"): _SET,
        ("status", "conditions"): MergeList("type"),
        ("status", "addresses"): MergeList("type"),
    },
    "Service": {("spec", "ports"): MergeList("port"), **_CONDITIONS},
    "PersistentVolumeClaim": dict(_CONDITIONS),
    "Namespace": dict(_CONDITIONS),
    "ServiceAccount": {("secrets",): MergeList("name")},
    "PodDisruptionBudget": dict(_CONDITIONS),
}


def merge_lists(kind: str) -> dict[Path, MergeList]:
    """The merging lists of a built-in kind, by field path (list items are transparent in paths)."""
    return {**_under(("metadata",), _OBJECT_META_LISTS), **_KIND_LISTS.get(kind, {})}


def supports_strategic_merge(kind: str, is_custom: bool) -> bool:
    """Whether the server accepts application/strategic-merge-patch+json for this kind.

    Custom resources have no Go struct tags to merge by, so the API server answers 415 for them.
    """
    return not is_custom


# ---------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902) and JSON merge patch (RFC 7386)


def apply_json_patch(obj: dict[str, Any], patch: list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 patch; a malformed patch is 400, one that does not fit the object 422."""
    if not isinstance(patch, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        operations = jsonpatch.JsonPatch(patch)
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as exc:
        raise bad_request(str(exc)) from exc
    try:
        result = operations.apply(obj)
    except jsonpatch.InvalidJsonPatch as exc:
        raise bad_request(str(exc)) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise _rejected(f"the JSON patch could not be applied: {exc}") from exc
    if not isinstance(result, dict):
        raise _rejected("the JSON patch replaced the object with a value that is not an object")
    return result


def _rejected(detail: str) -> ApiError:
    """The 422 the API server answers when a patch is well formed but cannot be applied."""
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        causes=[Cause("", detail, "UnexpectedServerResponse")],
    )


def apply_merge_patch(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7386 merge patch: objects merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        raise bad_request("the merge patch must be a JSON object")
    merged = _merge_patch_value(obj, patch)
    assert isinstance(merged, dict)
    return merged


def _merge_patch_value(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch_value(result.get(key), value)
    return result


def create_merge_patch(original: Any, target: Any) -> Any:
    """The RFC 7386 merge patch that turns `original` into `target` (null values in target cannot be kept)."""
    if not isinstance(original, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {}
    for key in original:
        if key not in target:
            patch[key] = None
    for key, value in target.items():
        if key not in original:
            patch[key] = copy.deepcopy(value)
        elif original[key] != value:
            patch[key] = create_merge_patch(original[key], value)
    return patch


# ---------------------------------------------------------------------------------------------------------
# Strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ELEMENT_ORDER = "$setElementOrder/"
_DELETED = object()


def apply_strategic_merge_patch(obj: dict[str, Any], patch: dict[str, Any], kind: str) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch to an object of a built-in kind.

    Lists named in `merge_lists(kind)` merge item by item on their merge key; other lists are replaced.
    The directives `$patch` (replace, delete, merge), `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
    `$setElementOrder/<field>` are honoured, and null deletes a field, as in apimachinery's strategicpatch.
    """
    if not isinstance(patch, dict):
        raise bad_request("the strategic merge patch must be a JSON object")
    merged = _StrategicMerge(merge_lists(kind)).merge_map(obj, patch, ())
    if merged is _DELETED:
        raise bad_request("a strategic merge patch cannot delete the whole object")
    assert isinstance(merged, dict)
    return merged


class _StrategicMerge:
    def __init__(self, lists: Mapping[Path, MergeList]) -> None:
        self.lists = lists

    def merge_map(self, original: Mapping[str, Any], patch: Mapping[str, Any], path: Path) -> Any:
        patch = dict(patch)
        directive = patch.pop(_DIRECTIVE, None)
        if directive == "delete":
            return _DELETED
        if directive == "replace":
            return self.merge_map({}, patch, path)
        if directive not in (None, "merge"):
            raise bad_request(f"unknown patch type: {directive} in map: {json.dumps(patch)}")
        result = copy.deepcopy(dict(original))
        retain = patch.pop(_RETAIN_KEYS, None)
        if retain is not None:
            if not isinstance(retain, list):
                raise bad_request("invalid patch: $retainKeys must be a list of field names")
            stray = [k for k in patch if not k.startswith("$") and k not in retain]
            if stray:
                raise _rejected(f"the content of the patch ({stray[0]}) is not listed in $retainKeys")
            result = {k: v for k, v in result.items() if k in retain}
        orders: dict[str, list[Any]] = {}
        for key in [k for k in patch if k.startswith(_DELETE_FROM_PRIMITIVE)]:
            field = key[len(_DELETE_FROM_PRIMITIVE) :]
            doomed = patch.pop(key)
            if not isinstance(doomed, list):
                raise bad_request(f"invalid patch: {key} must be a list")
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in doomed]
        for key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
            order = patch.pop(key)
            if not isinstance(order, list):
                raise bad_request(f"invalid patch: {key} must be a list")
            orders[key[len(_SET_ELEMENT_ORDER) :]] = order
        for key, value in patch.items():
            child = (*path, key)
            if value is None:
                result.pop(key, None)
            elif isinstance(value, dict):
                current = result.get(key)
                merged = self.merge_map(current if isinstance(current, dict) else {}, value, child)
                if merged is _DELETED:
                    result.pop(key, None)
                else:
                    result[key] = merged
            elif isinstance(value, list):
                current = result.get(key)
                result[key] = self.merge_list(current if isinstance(current, list) else [], value, child)
            else:
                result[key] = copy.deepcopy(value)
        for field, order in orders.items():
            if isinstance(result.get(field), list):
                result[field] = self.reorder(result[field], order, (*path, field))
        return result

    def merge_list(self, original: list[Any], patch: list[Any], path: Path) -> list[Any]:
        rule = self.lists.get(path)
        if rule is None:
            return [self.clean(item, path) for item in patch]
        if rule.key is None:
            merged = list(original)
            for item in patch:
                if item not in merged:
                    merged.append(copy.deepcopy(item))
            return merged
        key = rule.key
        if any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace" for item in patch):
            return [
                self.clean(item, path)
                for item in patch
                if not (isinstance(item, dict) and item.get(_DIRECTIVE) == "replace")
            ]
        result = copy.deepcopy(original)
        for item in patch:
            if not isinstance(item, dict):
                raise bad_request(f"invalid patch: the items of {'.'.join(path)} must be objects")
            if key not in item:
                raise bad_request(f"map: {json.dumps(item)} does not contain declared merge key: {key}")
            index = next(
                (
                    i
                    for i, existing in enumerate(result)
                    if isinstance(existing, dict) and existing.get(key) == item[key]
                ),
                None,
            )
            if item.get(_DIRECTIVE) == "delete":
                if index is not None:
                    del result[index]
                continue
            if index is None:
                merged = self.merge_map({}, item, path)
                if merged is not _DELETED:
                    result.append(merged)
            else:
                merged = self.merge_map(result[index], item, path)
                if merged is _DELETED:
                    del result[index]
                else:
                    result[index] = merged
        return result

    def clean(self, value: Any, path: Path) -> Any:
        """A patch value that lands with nothing to merge into, stripped of directives."""
        if isinstance(value, dict):
            merged = self.merge_map({}, value, path)
            return {} if merged is _DELETED else merged
        return copy.deepcopy(value)

    def reorder(self, items: list[Any], order: list[Any], path: Path) -> list[Any]:
        """Order items as `$setElementOrder` says; items the patch did not name keep their place after
        the item that preceded them before."""
        rule = self.lists.get(path)
        key = rule.key if rule is not None else None

        def identity(item: Any) -> Any:
            if key is not None and isinstance(item, dict):
                return json.dumps(item.get(key), sort_keys=True)
            return json.dumps(item, sort_keys=True)

        wanted = [identity(o) for o in order]
        by_identity = {identity(item): item for item in items}
        result = [by_identity[w] for w in wanted if w in by_identity]
        placed = {identity(item) for item in result}
        previous: Any = None
        for item in items:
            ident = identity(item)
            if ident not in placed:
                position = 0
                if previous is not None:
                    position = next(i for i, r in enumerate(result) if identity(r) == previous) + 1
                result.insert(position, item)
                placed.add(ident)
            previous = ident
        return result


# ---------------------------------------------------------------------------------------------------------
# Managed fields: field sets in the FieldsV1 format ("f:name", "k:{...}", "v:...", "i:n", ".").


@dataclass(frozen=True)
class ListRule:
    """How server-side apply treats a list: atomic (replaced whole), set of scalars, or map by keys."""

    kind: str  # "atomic" | "set" | "map"
    keys: tuple[str, ...] = ()


_ATOMIC = ListRule("atomic")


class _TypeModel:
    """What server-side apply needs to know of a type: how its lists merge."""

    def list_rule(self, path: Path) -> ListRule:
        raise NotImplementedError

    def is_atomic_map(self, path: Path) -> bool:
        return False


class _BuiltinModel(_TypeModel):
    def __init__(self, kind: str) -> None:
        self.lists = merge_lists(kind)

    def list_rule(self, path: Path) -> ListRule:
        rule = self.lists.get(path)
        if rule is None:
            return _ATOMIC
        return ListRule("set") if rule.key is None else ListRule("map", (rule.key,))


class _SchemaModel(_TypeModel):
    """List semantics from a CRD's openAPIV3Schema: x-kubernetes-list-type and -list-map-keys."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.meta = _BuiltinModel("")

    def node(self, path: Path) -> Mapping[str, Any] | None:
        node: Mapping[str, Any] | None = self.schema
        for name in path:
            if node is None:
                return None
            if node.get("type") == "array":
                node = node.get("items")
                if node is None:
                    return None
            props = node.get("properties") or {}
            if name in props:
                node = props[name]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return None
        return node

    def list_rule(self, path: Path) -> ListRule:
        if path[:1] == ("metadata",):
            return self.meta.list_rule(path)
        node = self.node(path)
        if node is None:
            return _ATOMIC
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "set":
            return ListRule("set")
        if list_type == "map":
            return ListRule("map", tuple(node.get("x-kubernetes-list-map-keys") or ()))
        return _ATOMIC

    def is_atomic_map(self, path: Path) -> bool:
        node = self.node(path)
        return node is not None and node.get("x-kubernetes-map-type") == "atomic"


def _model(kind: str, schema: Mapping[str, Any] | None) -> _TypeModel:
    return _SchemaModel(schema) if schema is not None else _BuiltinModel(kind)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _item_element(item: Any, rule: ListRule, index: int) -> str:
    if rule.kind == "set":
        return "v:" + _compact(item)
    if rule.kind == "map" and isinstance(item, dict):
        keys = {k: item[k] for k in rule.keys if k in item}
        if keys:
            return "k:" + _compact(keys)
    return f"i:{index}"


# Fields the API server never records in managedFields (fieldmanager's stripMeta).
_STRIPPED: frozenset[Path] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        *(
            ("f:metadata", f"f:{name}")
            for name in (
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            )
        ),
    }
)


def _stripped(path: Path) -> bool:
    return path in _STRIPPED or (len(path) > 2 and path[:2] in _STRIPPED)


_NODE = object()  # the flattened value of an object node or list item: compared by its children


def _flatten(value: Any, model: _TypeModel, path: Path = (), names: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every field path of an object with its value (object nodes and list items yield _NODE)."""
    if isinstance(value, dict) and not (names and model.is_atomic_map(names)):
        for key, child in value.items():
            child_path = (*path, f"f:{key}")
            child_names = (*names, key)
            if isinstance(child, dict) and child and not model.is_atomic_map(child_names):
                yield child_path, _NODE
                yield from _flatten(child, model, child_path, child_names)
            elif isinstance(child, list) and model.list_rule(child_names).kind != "atomic":
                yield child_path, _NODE
                rule = model.list_rule(child_names)
                for index, item in enumerate(child):
                    item_path = (*child_path, _item_element(item, rule, index))
                    if rule.kind == "map" and isinstance(item, dict):
                        yield item_path, _NODE
                        yield from _flatten(item, model, item_path, child_names)
                    else:
                        yield item_path, item
            else:
                yield child_path, child


def _applied_set(applied: Mapping[str, Any], model: _TypeModel) -> set[Path]:
    """The fields an apply configuration specifies: leaves, list items and empty objects."""
    owned: set[Path] = set()
    for path, value in _flatten(applied, model):
        if _stripped(path):
            continue
        is_item = path[-1][:2] in ("k:", "v:", "i:")
        if value is not _NODE or is_item:
            owned.add(path)
    return owned


@dataclass
class _Comparison:
    added: set[Path]
    modified: set[Path]
    removed: set[Path]


def _compare(old: Mapping[str, Any] | None, new: Mapping[str, Any], model: _TypeModel) -> _Comparison:
    before = dict(_flatten(old or {}, model))
    after = dict(_flatten(new, model))
    added = {p for p in after if p not in before and not _stripped(p)}
    removed = {p for p in before if p not in after and not _stripped(p)}
    modified = {
        p
        for p, value in after.items()
        if p in before
        and not _stripped(p)
        and (value is not _NODE or before[p] is not _NODE)
        and before[p] != value
    }
    return _Comparison(added, modified, removed)


def _fields_to_set(fields: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    result: set[Path] = set()
    if not fields and prefix:
        result.add(prefix)
    for key, child in fields.items():
        if key == ".":
            result.add(prefix)
        else:
            result |= _fields_to_set(child if isinstance(child, dict) else {}, (*prefix, key))
    return result


def _set_to_fields(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    members: set[Path] = set(paths)
    for path in sorted(members):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    # A path that is both a member and has children carries "." to say so.
    for path in members:
        node = root
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return _sorted_fields(root)


def _sorted_fields(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_fields(node[k]) for k in sorted(node, key=lambda k: (k != ".", k))}


def _path_string(path: Path) -> str:
    """A field path as Kubernetes prints it in conflicts: .spec.containers[name="app"].image."""
    parts: list[str] = []
    for element in path:
        tag, _, rest = element.partition(":")
        if tag == "f":
            parts.append("." + rest)
        elif tag == "k":
            keys = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={_compact(v)}" for k, v in keys.items()) + "]")
        elif tag == "v":
            parts.append("[=" + rest + "]")
        elif tag == "i":
            parts.append(f"[{rest}]")
    return "".join(parts)


@dataclass
class _Manager:
    """One managedFields entry, with its field set decoded."""

    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: set[Path]

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        """The manager as conflict messages name it (apiserver's printManager)."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
            if self.time:
                text += f" at {self.time}"
        return text

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = _set_to_fields(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _decode_managers(obj: Mapping[str, Any] | None) -> list[_Manager]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    managers: list[_Manager] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        managers.append(
            _Manager(
                manager=str(entry.get("manager", "")),
                operation=str(entry.get("operation", "Update")),
                api_version=str(entry.get("apiVersion", "")),
                time=entry.get("time"),
                subresource=str(entry.get("subresource", "")),
                fields=_fields_to_set(entry.get("fieldsV1") or {}),
            )
        )
    return managers


def _store_managers(obj: dict[str, Any], managers: list[_Manager]) -> dict[str, Any]:
    kept = [m for m in managers if m.fields]
    # The API server's order: Apply before Update, then by time, manager, apiVersion, subresource.
    kept.sort(key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource))
    metadata = obj.setdefault("metadata", {})
    if kept:
        metadata["managedFields"] = [m.entry() for m in kept]
    else:
        metadata.pop("managedFields", None)
    return obj


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _existing_paths(obj: Mapping[str, Any], model: _TypeModel) -> set[Path]:
    return {p for p, _ in _flatten(obj, model)}


def _kind_of(obj: Mapping[str, Any] | None) -> str:
    return str((obj or {}).get("kind", ""))


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    operation: str = "Update",
    *,
    subresource: str = "",
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record in new's metadata.managedFields that `manager` set what changed from old to new.

    Used for create, update and non-apply patch calls: the manager takes ownership of every field it
    added or changed (from whoever owned it), and nobody keeps owning fields that no longer exist.
    `schema` is a CRD version's openAPIV3Schema (list types); built-in kinds use their merge keys.
    """
    result = copy.deepcopy(new)
    model = _model(_kind_of(new) or _kind_of(old), schema)
    # A client may send managedFields to reset them; otherwise the live object's stand.
    sent = (result.get("metadata") or {}).get("managedFields")
    managers = _decode_managers(result if sent or old is None else old)
    compare = _compare(_without_managed_fields(old) if old is not None else None, result, model)
    changed = compare.added | compare.modified
    existing = _existing_paths(result, model)
    now = _now()
    identity = (manager or "unknown", operation, subresource)
    actor = next((m for m in managers if m.identity == identity), None)
    for other in managers:
        if other is not actor:
            other.fields = {p for p in other.fields - changed if p in existing}
    if changed or actor is not None:
        if actor is None:
            actor = _Manager(
                identity[0], operation, str(result.get("apiVersion", "")), now, subresource, set()
            )
            managers.append(actor)
        actor.fields = {p for p in actor.fields | changed if p in existing}
        if changed:
            actor.time = now
            actor.api_version = str(result.get("apiVersion", actor.api_version))
    return _store_managers(result, managers)


def _without_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    stripped = dict(obj)
    stripped["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return stripped


def apply_server_side(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    kind: str,
    *,
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Server-side apply (application/apply-patch+yaml) of `applied` onto `live` (None to create).

    Merges the configuration into the live object (lists by their merge keys for built-ins, by
    x-kubernetes-list-type/-list-map-keys when `schema` is given, atomic otherwise), records that
    `manager` owns exactly what it applied, removes what it applied last time and no longer applies
    (unless someone else owns it too), and answers 409 when another manager owns a field this apply
    would change, unless `force` takes the field over.
    """
    if not isinstance(applied, dict):
        raise bad_request("the apply configuration must be an object")
    if not manager:
        raise bad_request("PATCH requests with apply-patch+yaml content type must set fieldManager")
    if (applied.get("metadata") or {}).get("managedFields"):
        raise bad_request("metadata.managedFields must be nil")
    model = _model(kind, schema)
    config = copy.deepcopy(applied)
    identity = (manager, "Apply", "")
    if live is None:
        merged = _ssa_merge({}, config, model, ())
        managers: list[_Manager] = []
    else:
        managers = _decode_managers(live)
        base = _without_managed_fields(live)
        if not managers:
            # Fields set before anyone applied belong to this pseudo-manager, so the first apply
            # does not silently take over what others wrote.
            legacy = _Manager(
                "before-first-apply", "Update", str(live.get("apiVersion", "")), None, "", set()
            )
            legacy.fields = {p for p, v in _flatten(base, model) if not _stripped(p) and _is_owned_leaf(p, v)}
            managers = [legacy]
        merged = _ssa_merge(base, config, model, ())
    new_set = _applied_set(config, model)
    actor = next((m for m in managers if m.identity == identity), None)
    previous = set(actor.fields) if actor is not None else set()

    base_for_compare = _without_managed_fields(live) if live is not None else {}
    compare = _compare(base_for_compare, merged, model)
    touched = compare.added | compare.modified
    conflicts: list[tuple[_Manager, Path]] = []
    for other in managers:
        if other is actor:
            continue
        for path in sorted(other.fields & touched):
            conflicts.append((other, path))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for other, path in conflicts:
        other.fields.discard(path)

    owned = set(new_set)
    for other in managers:
        if other is not actor:
            owned |= other.fields
    # Shortest first: a list item goes whole, before its key field could be removed from under it.
    for path in sorted(_disowned(previous, owned, merged, model), key=len):
        _remove_path(merged, path, model)

    if actor is None:
        actor = _Manager(manager, "Apply", str(config.get("apiVersion", "")), None, "", set())
        managers.append(actor)
    actor.fields = new_set
    actor.time = _now()
    actor.api_version = str(config.get("apiVersion", actor.api_version))
    existing = _existing_paths(merged, model)
    for other in managers:
        if other is not actor:
            other.fields = {p for p in other.fields if p in existing}
    return _store_managers(merged, managers)


def _disowned(
    previous: set[Path], owned: set[Path], merged: Mapping[str, Any], model: _TypeModel
) -> set[Path]:
    """What an apply removes: fields it applied before and not now, that nobody owns, above or below.

    As structured-merge-diff prunes: only fields (leaves, list items, empty objects) are removed; an
    object that still holds fields stays, and a list item stays while anyone owns a field inside it.
    """
    members = {p for p, v in _flatten(merged, model) if _is_owned_leaf(p, v)}
    prefixes = {p[:i] for p in owned for i in range(1, len(p))}
    disowned: set[Path] = set()
    for path in previous & members:
        if path in owned or path in prefixes:
            continue
        if any(path[:i] in owned for i in range(1, len(path))):
            continue
        if _is_item_key(path) and path[:-1] in prefixes:
            continue  # a kept list item keeps the fields that identify it
        disowned.add(path)
    return disowned


def _is_item_key(path: Path) -> bool:
    """Whether a path is a key field of the associative list item it sits in (f:name under k:{"name":..})."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    keys = json.loads(path[-2][2:])
    return isinstance(keys, dict) and path[-1][2:] in keys


def _is_owned_leaf(path: Path, value: Any) -> bool:
    return value is not _NODE or path[-1][:2] in ("k:", "v:", "i:")


def _conflict_error(conflicts: list[tuple[_Manager, Path]]) -> ApiError:
    causes = [
        Cause(_path_string(path), f"conflict with {m.describe()}", "FieldManagerConflict")
        for m, path in conflicts
    ]
    if len(conflicts) == 1:
        m, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {_path_string(path)}"
    else:
        by_manager: dict[str, list[Path]] = {}
        for m, path in conflicts:
            by_manager.setdefault(m.describe(), []).append(path)
        lines: list[str] = []
        for described in sorted(by_manager):
            lines.append(f"conflicts with {described}:")
            lines.extend(f"- {_path_string(p)}" for p in by_manager[described])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, causes=causes)


def _ssa_merge(live: Any, config: Any, model: _TypeModel, names: Path) -> Any:
    if isinstance(config, dict) and isinstance(live, dict) and not (names and model.is_atomic_map(names)):
        result = copy.deepcopy(live)
        for key, value in config.items():
            if value is None:
                result.pop(key, None)
                continue
            child = (*names, key)
            current = result.get(key)
            if isinstance(value, list) and isinstance(current, list):
                result[key] = _ssa_merge_list(current, value, model, child)
            else:
                result[key] = _ssa_merge(current, value, model, child)
        return result
    if isinstance(config, dict):
        return (
            _ssa_merge({}, config, model, names) if not model.is_atomic_map(names) else copy.deepcopy(config)
        )
    return copy.deepcopy(config)


def _ssa_merge_list(live: list[Any], config: list[Any], model: _TypeModel, names: Path) -> list[Any]:
    rule = model.list_rule(names)
    if rule.kind == "set":
        return live + [copy.deepcopy(v) for v in config if v not in live]
    if rule.kind == "map":
        result = copy.deepcopy(live)
        for item in config:
            element = _item_element(item, rule, -1)
            index = next(
                (i for i, existing in enumerate(result) if _item_element(existing, rule, i) == element), None
            )
            if index is None or element.startswith("i:"):
                result.append(_ssa_merge({}, item, model, names))
            else:
                result[index] = _ssa_merge(result[index], item, model, names)
        return result
    return copy.deepcopy(config)


def _remove_path(obj: dict[str, Any], path: Path, model: _TypeModel) -> None:
    """Remove the field or list item a field path names, if it is still there."""
    node: Any = obj
    names: Path = ()
    for depth, element in enumerate(path):
        last = depth == len(path) - 1
        tag, _, rest = element.partition(":")
        if tag == "f":
            if not isinstance(node, dict) or rest not in node:
                return
            names = (*names, rest)
            if last:
                del node[rest]
                return
            node = node[rest]
        elif tag in ("k", "v", "i"):
            if not isinstance(node, list):
                return
            rule = model.list_rule(names)
            index = next((i for i, item in enumerate(node) if _item_element(item, rule, i) == element), None)
            if index is None:
                return
            if last:
                del node[index]
                return
            node = node[index]
        else:
            return
