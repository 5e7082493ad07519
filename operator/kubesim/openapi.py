"""OpenAPI v2 and v3 documents of the served kinds, shaped as kubectl reads them (explain, apply, patch)."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from kubesim import builtin_schemas
from kubesim.builtin_schemas import META, REF_PREFIX
from kubesim.resources import ResourceType

KUBERNETES_VERSION = "v1.32.0"

PATCH_JSON = "application/json-patch+json"
PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"

_OBJECT_META = f"{META}.ObjectMeta"
_LIST_META = f"{META}.ListMeta"
_STATUS = f"{META}.Status"
_DELETE_OPTIONS = f"{META}.DeleteOptions"
_PATCH = f"{META}.Patch"
_WATCH_EVENT = f"{META}.WatchEvent"
_SCALE = "io.k8s.api.autoscaling.v1.Scale"

# Definitions every document carries: request and response bodies common to all kinds.
_COMMON_DEFINITIONS: dict[str, dict[str, Any]] = {
    _PATCH: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    },
    _WATCH_EVENT: {
        "description": "Event represents a single event to a watched resource.",
        "type": "object",
        "required": ["type", "object"],
        "properties": {
            "object": {
                "description": "Object is: * If Type is Added or Modified: the new state of the object. "
                "* If Type is Deleted: the state of the object immediately before deletion. "
                "* If Type is Error: *Status is recommended; other types may make sense depending on context.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "type": {"type": "string"},
        },
    },
}

_METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)


def _types(types: Any) -> list[ResourceType]:
    """Accept the registry itself (anything with .all()) or any iterable of resource types."""
    if hasattr(types, "all"):
        return list(types.all())
    return list(types)


# ---------------------------------------------------------------------------------------------------------
# Schemas of kinds


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """Custom kinds are published under the reversed group: fleet.scaleset.dev -> dev.scaleset.fleet."""
    return ".".join([*reversed(group.split(".")), version, kind])


def definition_name(rt: ResourceType) -> str:
    if rt.is_custom:
        return crd_definition_name(rt.group, rt.version, rt.kind)
    name = builtin_schemas.definition_name(rt.group, rt.version, rt.kind)
    if name is not None:
        return name
    return crd_definition_name(rt.group or "core", rt.version, rt.kind)


def _gvk(rt: ResourceType, kind: str | None = None) -> dict[str, str]:
    return {"group": rt.group, "version": rt.version, "kind": kind or rt.kind}


def _custom_schema(rt: ResourceType) -> dict[str, Any]:
    """A CRD version's schema as the API server publishes it: metadata is ObjectMeta, the kind is tagged."""
    schema: dict[str, Any] = copy.deepcopy(rt.schema) if rt.schema else {}
    schema.setdefault("type", "object")
    if rt.schema is None:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"description": _API_VERSION_DESCRIPTION, "type": "string"}
    properties["kind"] = {"description": _KIND_DESCRIPTION, "type": "string"}
    properties["metadata"] = {
        "description": _METADATA_DESCRIPTION,
        "allOf": [{"$ref": REF_PREFIX + _OBJECT_META}],
    }
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    return schema


def _fallback_schema(rt: ResourceType) -> dict[str, Any]:
    """A permissive schema for a built-in kind the client models do not cover."""
    return {
        "description": f"{rt.kind} of {rt.group or 'core'}/{rt.version}.",
        "type": "object",
        "properties": {
            "apiVersion": {"description": _API_VERSION_DESCRIPTION, "type": "string"},
            "kind": {"description": _KIND_DESCRIPTION, "type": "string"},
            "metadata": {
                "description": _METADATA_DESCRIPTION,
                "allOf": [{"$ref": REF_PREFIX + _OBJECT_META}],
            },
        },
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [_gvk(rt)],
    }


def _kind_schemas(rt: ResourceType) -> dict[str, dict[str, Any]]:
    """The definitions a type contributes itself: its kind and its List."""
    name = definition_name(rt)
    if rt.is_custom:
        schema = _custom_schema(rt)
    else:
        known = builtin_schemas.definitions().get(name)
        schema = copy.deepcopy(known) if known is not None else _fallback_schema(rt)
        schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    return {
        name: schema,
        f"{name}List": builtin_schemas.list_definition(name, rt.kind, _gvk(rt, rt.list_kind)),
    }


def _referenced(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            yield ref[len(REF_PREFIX) :]
        for value in schema.values():
            yield from _referenced(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _referenced(value)


def _closure(roots: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The given definitions and every built-in definition they reach through $ref."""
    available = builtin_schemas.definitions()
    result: dict[str, dict[str, Any]] = dict(roots)
    pending = [name for schema in roots.values() for name in _referenced(schema)]
    while pending:
        name = pending.pop()
        if name in result:
            continue
        schema = _COMMON_DEFINITIONS.get(name) or available.get(name)
        if schema is None:
            continue
        result[name] = schema
        pending.extend(_referenced(schema))
    return dict(sorted(result.items()))


# ---------------------------------------------------------------------------------------------------------
# Paths


def _prefix(rt: ResourceType) -> str:
    return f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", ".").split(".") if part)


def _operation_id(verb: str, rt: ResourceType, namespaced: bool, suffix: str = "") -> str:
    group = _camel(rt.group) if rt.group else "Core"
    scope = "Namespaced" if namespaced else ""
    return f"{verb}{group}{_camel(rt.version)}{scope}{rt.kind}{suffix}"


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind, "uniqueItems": True},
    }


_DRY_RUN = _query(
    "dryRun",
    "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run "
    "stages will be processed",
)
_FIELD_MANAGER = _query(
    "fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."
)
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
)
_FORCE = _query("force", 'Force is going to "force" Apply requests.', "boolean")
_PRETTY = _query("pretty", "If 'true', then the output is pretty printed.")
_LIST_PARAMETERS = [
    _query(
        "allowWatchBookmarks", 'allowWatchBookmarks requests watch events with type "BOOKMARK".', "boolean"
    ),
    _query("continue", "The continue option should be set when retrieving more results from the server."),
    _query("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    _query("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    _query("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    _query(
        "resourceVersion",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    _query(
        "resourceVersionMatch",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    _query("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
    _query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _query(
        "watch",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        "boolean",
    ),
]
_DELETE_PARAMETERS = [
    _DRY_RUN,
    _query("gracePeriodSeconds", "The duration in seconds before the object should be deleted.", "integer"),
    _query("propagationPolicy", "Whether and how garbage collection will be performed."),
]


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "description": description,
        "required": True,
        "schema": {"type": "string", "uniqueItems": True},
    }


def _json_content(ref: str) -> dict[str, Any]:
    schema = {"$ref": REF_PREFIX + ref}
    return {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}}


def _response(ref: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": _json_content(ref)}


def _operation(
    action: str, rt: ResourceType, gvk: Mapping[str, str], operation_id: str, description: str, **fields: Any
) -> dict[str, Any]:
    tag = f"{_camel(rt.group) if rt.group else 'core'}_{rt.version}"
    return {
        "tags": [tag],
        "description": description,
        "operationId": operation_id,
        **fields,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": dict(gvk),
    }


def _patch_content(rt: ResourceType) -> dict[str, Any]:
    types = [PATCH_JSON, PATCH_MERGE]
    # Custom resources have no strategic merge: kubectl then computes a JSON merge patch for them.
    if not rt.is_custom:
        types.append(PATCH_STRATEGIC)
    types.append(PATCH_APPLY)
    return {t: {"schema": {"$ref": REF_PREFIX + _PATCH}} for t in types}


def _item_operations(
    rt: ResourceType, namespaced: bool, ref: str, gvk: Mapping[str, str], what: str, suffix: str = ""
) -> dict[str, Any]:
    verbs = set(rt.verbs)
    item: dict[str, Any] = {}
    if "get" in verbs:
        item["get"] = _operation(
            "get",
            rt,
            gvk,
            _operation_id("read", rt, namespaced, suffix),
            f"read {what} of the specified {rt.kind}",
            responses={"200": _response(ref), "401": {"description": "Unauthorized"}},
        )
    if "update" in verbs:
        item["put"] = _operation(
            "put",
            rt,
            gvk,
            _operation_id("replace", rt, namespaced, suffix),
            f"replace {what} of the specified {rt.kind}",
            parameters=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
            requestBody={"content": {"*/*": {"schema": {"$ref": REF_PREFIX + ref}}}, "required": True},
            responses={
                "200": _response(ref),
                "201": _response(ref, "Created"),
                "401": {"description": "Unauthorized"},
            },
        )
    if "patch" in verbs:
        item["patch"] = _operation(
            "patch",
            rt,
            gvk,
            _operation_id("patch", rt, namespaced, suffix),
            f"partially update {what} of the specified {rt.kind}",
            parameters=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE],
            requestBody={"content": _patch_content(rt), "required": True},
            responses={
                "200": _response(ref),
                "201": _response(ref, "Created"),
                "401": {"description": "Unauthorized"},
            },
        )
    return item


def _paths(rt: ResourceType) -> dict[str, dict[str, Any]]:
    """The REST paths of one type, with the operations its verbs allow."""
    prefix = _prefix(rt)
    name_ref = definition_name(rt)
    list_ref = f"{name_ref}List"
    gvk = _gvk(rt)
    verbs = set(rt.verbs)
    namespaced = rt.namespaced
    base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if namespaced else f"{prefix}/{rt.plural}"
    scope_parameters = (
        [_path_parameter("namespace", "object name and auth scope, such as for teams and projects")]
        if namespaced
        else []
    )
    name_parameter = _path_parameter("name", f"name of the {rt.kind}")
    paths: dict[str, dict[str, Any]] = {}

    collection: dict[str, Any] = {}
    if "list" in verbs:
        collection["get"] = _operation(
            "list",
            rt,
            gvk,
            _operation_id("list", rt, namespaced),
            f"list or watch objects of kind {rt.kind}",
            parameters=_LIST_PARAMETERS,
            responses={"200": _response(list_ref), "401": {"description": "Unauthorized"}},
        )
    if "create" in verbs:
        collection["post"] = _operation(
            "post",
            rt,
            gvk,
            _operation_id("create", rt, namespaced),
            f"create a {rt.kind}",
            parameters=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
            requestBody={"content": {"*/*": {"schema": {"$ref": REF_PREFIX + name_ref}}}, "required": True},
            responses={
                "200": _response(name_ref),
                "201": _response(name_ref, "Created"),
                "202": _response(name_ref, "Accepted"),
                "401": {"description": "Unauthorized"},
            },
        )
    if "deletecollection" in verbs:
        collection["delete"] = _operation(
            "deletecollection",
            rt,
            gvk,
            _operation_id("deleteCollection", rt, namespaced),
            f"delete collection of {rt.kind}",
            parameters=[*_DELETE_PARAMETERS, *_LIST_PARAMETERS],
            responses={"200": _response(_STATUS), "401": {"description": "Unauthorized"}},
        )
    if collection:
        collection["parameters"] = [*scope_parameters, _PRETTY]
        paths[base] = collection

    item = _item_operations(rt, namespaced, name_ref, gvk, "the")
    if "delete" in verbs:
        item["delete"] = _operation(
            "delete",
            rt,
            gvk,
            _operation_id("delete", rt, namespaced),
            f"delete a {rt.kind}",
            parameters=_DELETE_PARAMETERS,
            responses={
                "200": _response(_STATUS),
                "202": _response(_STATUS, "Accepted"),
                "401": {"description": "Unauthorized"},
            },
        )
    if item:
        item["parameters"] = [name_parameter, *scope_parameters, _PRETTY]
        paths[f"{base}/{{name}}"] = item

    if namespaced and "list" in verbs:
        paths[f"{prefix}/{rt.plural}"] = {
            "get": _operation(
                "list",
                rt,
                gvk,
                _operation_id("list", rt, False, "ForAllNamespaces"),
                f"list or watch objects of kind {rt.kind}",
                responses={"200": _response(list_ref), "401": {"description": "Unauthorized"}},
            ),
            "parameters": [*_LIST_PARAMETERS, _PRETTY],
        }

    if rt.status_subresource:
        status = _item_operations(rt, namespaced, name_ref, gvk, "status", "Status")
        status.pop("delete", None)
        status["parameters"] = [name_parameter, *scope_parameters, _PRETTY]
        paths[f"{base}/{{name}}/status"] = status
    if rt.scale is not None:
        scale_gvk = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        scale = _item_operations(rt, namespaced, _SCALE, scale_gvk, "scale", "Scale")
        scale["parameters"] = [name_parameter, *scope_parameters, _PRETTY]
        paths[f"{base}/{{name}}/scale"] = scale
    return paths


# ---------------------------------------------------------------------------------------------------------
# Documents


def _group_version_document(group: str, version: str, served: list[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    roots: dict[str, dict[str, Any]] = {}
    for rt in served:
        paths.update(_paths(rt))
        roots.update(_kind_schemas(rt))
    for name in (_STATUS, _DELETE_OPTIONS, _PATCH, _WATCH_EVENT, _OBJECT_META, _LIST_META):
        roots.setdefault(name, _COMMON_DEFINITIONS.get(name) or builtin_schemas.definitions()[name])
    if any(rt.scale is not None for rt in served):
        roots.setdefault(_SCALE, builtin_schemas.definitions()[_SCALE])
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _closure(roots),
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                }
            },
        },
    }


def _fingerprint(served: list[ResourceType]) -> str:
    """What a document depends on, so one is built once per change of the served types."""
    parts = [
        [
            rt.group,
            rt.version,
            rt.kind,
            rt.plural,
            rt.namespaced,
            list(rt.verbs),
            rt.status_subresource,
            rt.scale is not None,
            rt.is_custom,
            rt.list_kind,
            rt.schema,
        ]
        for rt in served
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# Documents by fingerprint: serialized once, served many times (kubectl fetches them on every apply).
_DOCUMENTS: dict[str, str] = {}
_DOCUMENTS_LOCK = threading.Lock()


def _document_text(group: str, version: str, served: list[ResourceType]) -> str:
    key = _fingerprint(served)
    with _DOCUMENTS_LOCK:
        text = _DOCUMENTS.get(key)
    if text is None:
        text = json.dumps(_group_version_document(group, version, served))
        with _DOCUMENTS_LOCK:
            if len(_DOCUMENTS) > 256:
                _DOCUMENTS.clear()
            _DOCUMENTS[key] = text
    return text


def _group_versions(types: list[ResourceType]) -> dict[tuple[str, str], list[ResourceType]]:
    result: dict[tuple[str, str], list[ResourceType]] = {}
    for rt in types:
        result.setdefault((rt.group, rt.version), []).append(rt)
    return result


def openapi_v3_group_version(group: str, version: str, types: Any) -> dict[str, Any] | None:
    """The /openapi/v3/api/v1 or /openapi/v3/apis/GROUP/VERSION document; None if nothing is served there."""
    served = _group_versions(_types(types)).get((group, version))
    if not served:
        return None
    document: dict[str, Any] = json.loads(_document_text(group, version, served))
    return document


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_index(types: Any) -> dict[str, Any]:
    """The /openapi/v3 discovery document: one entry per group-version, with a hash of its document that
    clients use to cache it."""
    paths: dict[str, Any] = {}
    for (group, version), served in sorted(_group_versions(_types(types)).items()):
        text = _document_text(group, version, served)
        digest = hashlib.sha512(text.encode()).hexdigest().upper()
        key = _gv_key(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


# ---------------------------------------------------------------------------------------------------------
# Swagger 2.0

_V2_REF = "#/definitions/"
_V3_ONLY = ("nullable", "anyOf", "oneOf", "not")


def _to_v2_schema(schema: Any) -> Any:
    """A v3 schema in Swagger 2.0 terms: refs to #/definitions, and no keywords 2.0 lacks."""
    if isinstance(schema, dict):
        result: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _V3_ONLY:
                continue
            if key == "$ref" and isinstance(value, str):
                result[key] = _V2_REF + value[len(REF_PREFIX) :]
            else:
                result[key] = _to_v2_schema(value)
        if result.get("x-kubernetes-int-or-string"):
            result.pop("type", None)
            result.pop("format", None)
        return result
    if isinstance(schema, list):
        return [_to_v2_schema(item) for item in schema]
    return schema


def _to_v2_operation(operation: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        k: v for k, v in operation.items() if k not in ("requestBody", "responses", "parameters")
    }
    parameters = [_to_v2_parameter(p) for p in operation.get("parameters") or []]
    body = operation.get("requestBody")
    if body:
        content: dict[str, Any] = body.get("content") or {}
        first: dict[str, Any] = next(iter(content.values()), {})
        schema = first.get("schema", {})
        parameters.insert(
            0, {"name": "body", "in": "body", "required": True, "schema": _to_v2_schema(schema)}
        )
        result["consumes"] = list(content)
    if parameters:
        result["parameters"] = parameters
    result["produces"] = ["application/json", "application/yaml"]
    result["schemes"] = ["https"]
    responses: dict[str, Any] = {}
    for code, response in (operation.get("responses") or {}).items():
        entry: dict[str, Any] = {"description": response.get("description", "")}
        content = response.get("content") or {}
        if content:
            entry["schema"] = _to_v2_schema(next(iter(content.values())).get("schema", {}))
        responses[code] = entry
    result["responses"] = responses
    return result


def _to_v2_parameter(parameter: Mapping[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in parameter.items() if k != "schema"}
    result.update(parameter.get("schema") or {})
    return result


def openapi_v2(types: Any) -> dict[str, Any]:
    """The /openapi/v2 (Swagger 2.0) document of everything served."""
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for (group, version), served in sorted(_group_versions(_types(types)).items()):
        document = json.loads(_document_text(group, version, served))
        for path, item in document["paths"].items():
            converted: dict[str, Any] = {}
            for method, operation in item.items():
                if method == "parameters":
                    converted[method] = [_to_v2_parameter(p) for p in operation]
                else:
                    converted[method] = _to_v2_operation(operation)
            paths[path] = converted
        for name, schema in document["components"]["schemas"].items():
            definitions.setdefault(name, _to_v2_schema(schema))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": dict(sorted(paths.items())),
        "definitions": dict(sorted(definitions.items())),
        "securityDefinitions": {
            "BearerToken": {
                "type": "apiKey",
                "description": "Bearer Token authentication",
                "name": "authorization",
                "in": "header",
            }
        },
        "security": [{"BearerToken": []}],
    }
