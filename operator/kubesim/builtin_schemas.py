"""OpenAPI schemas of the built-in kinds, derived from the models of the official Kubernetes Python client."""

from __future__ import annotations

import datetime
import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import kubernetes.client as k8s
from pydantic import BaseModel

from kubesim.patch import merge_lists

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
CORE = "io.k8s.api.core.v1"

# Built-in kinds: (group, version, kind) -> (definition package, client model).
KINDS: dict[tuple[str, str, str], tuple[str, str]] = {
    ("", "v1", "Namespace"): (CORE, "V1Namespace"),
    ("", "v1", "Pod"): (CORE, "V1Pod"),
    ("", "v1", "PodTemplate"): (CORE, "V1PodTemplate"),
    ("", "v1", "PersistentVolumeClaim"): (CORE, "V1PersistentVolumeClaim"),
    ("", "v1", "PersistentVolume"): (CORE, "V1PersistentVolume"),
    ("", "v1", "Event"): (CORE, "CoreV1Event"),
    ("", "v1", "ConfigMap"): (CORE, "V1ConfigMap"),
    ("", "v1", "Secret"): (CORE, "V1Secret"),
    ("", "v1", "Service"): (CORE, "V1Service"),
    ("", "v1", "Node"): (CORE, "V1Node"),
    ("", "v1", "ServiceAccount"): (CORE, "V1ServiceAccount"),
    ("", "v1", "Endpoints"): (CORE, "V1Endpoints"),
    ("apps", "v1", "ControllerRevision"): ("io.k8s.api.apps.v1", "V1ControllerRevision"),
    ("apps", "v1", "Deployment"): ("io.k8s.api.apps.v1", "V1Deployment"),
    ("apps", "v1", "StatefulSet"): ("io.k8s.api.apps.v1", "V1StatefulSet"),
    ("apps", "v1", "ReplicaSet"): ("io.k8s.api.apps.v1", "V1ReplicaSet"),
    ("apps", "v1", "DaemonSet"): ("io.k8s.api.apps.v1", "V1DaemonSet"),
    ("events.k8s.io", "v1", "Event"): ("io.k8s.api.events.v1", "EventsV1Event"),
    ("coordination.k8s.io", "v1", "Lease"): ("io.k8s.api.coordination.v1", "V1Lease"),
    ("policy", "v1", "PodDisruptionBudget"): ("io.k8s.api.policy.v1", "V1PodDisruptionBudget"),
    ("networking.k8s.io", "v1", "NetworkPolicy"): ("io.k8s.api.networking.v1", "V1NetworkPolicy"),
    ("rbac.authorization.k8s.io", "v1", "Role"): ("io.k8s.api.rbac.v1", "V1Role"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): ("io.k8s.api.rbac.v1", "V1RoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"): ("io.k8s.api.rbac.v1", "V1ClusterRole"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): ("io.k8s.api.rbac.v1", "V1ClusterRoleBinding"),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
        "V1CustomResourceDefinition",
    ),
    ("autoscaling", "v1", "Scale"): ("io.k8s.api.autoscaling.v1", "V1Scale"),
}

# Types of the meta group, shared by every kind.
_META_MODELS = (
    "V1ObjectMeta",
    "V1ListMeta",
    "V1OwnerReference",
    "V1ManagedFieldsEntry",
    "V1LabelSelector",
    "V1LabelSelectorRequirement",
    "V1Condition",
    "V1Status",
    "V1StatusDetails",
    "V1StatusCause",
    "V1DeleteOptions",
    "V1Preconditions",
)

# Types that belong to core/v1 although apps and others reach them first.
_CORE_SEEDS = ("V1PodTemplateSpec", "V1PersistentVolumeClaim", "V1ObjectReference")

_VERSION_PREFIX = re.compile(r"^(?:[A-Z][a-z]+)*V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])")

REF_PREFIX = "#/components/schemas/"


def go_name(model: str) -> str:
    """The Go type name of a client model: V1PodSpec -> PodSpec, CoreV1Event -> Event."""
    return _VERSION_PREFIX.sub("", model, count=1)


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition that describes a built-in kind, e.g. io.k8s.api.core.v1.Pod."""
    entry = KINDS.get((group, version, kind))
    if entry is None:
        return None
    return f"{entry[0]}.{go_name(entry[1])}"


class _Builder:
    """Turns pydantic client models into OpenAPI v3 definitions, naming each model once."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.definitions: dict[str, dict[str, Any]] = {}

    def name(self, model: type[BaseModel], package: str) -> str:
        model_name = model.__name__
        if model_name not in self.names:
            chosen = META if model_name in _META_MODELS else package
            self.names[model_name] = f"{chosen}.{go_name(model_name)}"
            self.definitions[self.names[model_name]] = {}  # placeholder against recursion
            self.definitions[self.names[model_name]] = self.describe(model, chosen)
        return self.names[model_name]

    def describe(self, model: type[BaseModel], package: str) -> dict[str, Any]:
        schema: dict[str, Any] = {}
        doc = _class_description(model)
        if doc:
            schema["description"] = doc
        schema["type"] = "object"
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field_name, field in model.model_fields.items():
            json_name = field.serialization_alias or field.alias or field_name
            prop = self.annotation(field.annotation, package)
            if field.description:
                if "$ref" in prop:
                    prop = {"allOf": [prop]}
                prop = {"description": field.description, **prop}
            properties[json_name] = prop
            if field.is_required():
                required.append(json_name)
        if properties:
            schema["properties"] = properties
        if required:
            schema["required"] = required
        return schema

    def annotation(self, annotation: Any, package: str) -> dict[str, Any]:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.annotation(args[0], package)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            if len(members) == 1:
                return self.annotation(members[0], package)
            bases = {_base(a) for a in members}
            if bases == {int, str}:
                return {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True}
            if bases == {bytes, str}:
                return {"type": "string", "format": "byte"}
            if bases == {int, float}:
                return {"type": "number", "format": "double"}
            # Either-or of objects, lists and booleans (JSONSchemaPropsOrBool and the like): free-form.
            return {"x-kubernetes-preserve-unknown-fields": True}
        if origin in (list, typing.List):  # noqa: UP006
            return {"type": "array", "items": self.annotation(args[0], package) if args else {}}
        if origin in (dict, typing.Dict):  # noqa: UP006
            value = args[1] if len(args) == 2 else Any
            return {"type": "object", "additionalProperties": self.annotation(value, package)}
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return {"$ref": REF_PREFIX + self.name(annotation, package)}
        if annotation is bool:
            return {"type": "boolean"}
        if annotation is int:
            return {"type": "integer", "format": "int64"}
        if annotation is float:
            return {"type": "number", "format": "double"}
        if annotation is str:
            return {"type": "string"}
        if annotation is bytes:
            return {"type": "string", "format": "byte"}
        if annotation is datetime.datetime:
            return {"type": "string", "format": "date-time"}
        if annotation is datetime.date:
            return {"type": "string", "format": "date"}
        # Any and object: free-form JSON (RawExtension, JSONSchemaProps' JSON fields).
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _base(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _class_description(model: type) -> str:
    doc = model.__doc__ or ""
    text = doc.split("Attributes:")[0]
    text = " ".join(line.strip() for line in text.strip().splitlines())
    return "" if text.startswith("Do not edit the class manually") else text


def _annotate_merge_lists(definitions: dict[str, dict[str, Any]], root: str, kind: str) -> None:
    """Mark the lists that strategic merge patch merges, with the keys the server merges them by, so
    that clients computing patches from this schema (kubectl apply) agree with kubesim."""
    for path, rule in merge_lists(kind).items():
        prop = _find_property(definitions, root, path)
        if prop is None:
            continue
        prop["x-kubernetes-patch-strategy"] = "merge"
        if rule.key is None:
            prop["x-kubernetes-list-type"] = "set"
        else:
            prop["x-kubernetes-patch-merge-key"] = rule.key
            prop["x-kubernetes-list-type"] = "map"
            prop["x-kubernetes-list-map-keys"] = [rule.key]


def _resolve(
    definitions: Mapping[str, dict[str, Any]], schema: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    if "$ref" in schema:
        return definitions.get(str(schema["$ref"])[len(REF_PREFIX) :])
    for member in schema.get("allOf") or []:
        if "$ref" in member:
            return definitions.get(str(member["$ref"])[len(REF_PREFIX) :])
    return schema


def _find_property(
    definitions: Mapping[str, dict[str, Any]], root: str, path: tuple[str, ...]
) -> dict[str, Any] | None:
    node: Mapping[str, Any] | None = definitions.get(root)
    prop: dict[str, Any] | None = None
    for name in path:
        if node is None:
            return None
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = _resolve(definitions, node["items"])
            if node is None:
                return None
        prop = (node.get("properties") or {}).get(name)
        if prop is None:
            return None
        node = _resolve(definitions, prop)
    return prop


@functools.lru_cache(maxsize=1)
def definitions() -> dict[str, dict[str, Any]]:
    """Every definition the built-in kinds need, keyed by name, with x-kubernetes-group-version-kind on
    each kind (and its List). Built once; callers must not modify the result."""
    builder = _Builder()
    for model in _META_MODELS:
        builder.name(getattr(k8s, model), META)
    for model in _CORE_SEEDS:
        builder.name(getattr(k8s, model), CORE)
    for (group, version, kind), (package, model_name) in sorted(
        KINDS.items(), key=lambda item: item[1][0] != CORE
    ):
        name = builder.name(getattr(k8s, model_name), package)
        gvk = {"group": group, "version": version, "kind": kind}
        builder.definitions[name]["x-kubernetes-group-version-kind"] = [gvk]
        _annotate_merge_lists(builder.definitions, name, kind)
        list_name = f"{name}List"
        builder.definitions[list_name] = list_definition(name, kind, {**gvk, "kind": f"{kind}List"})
    _fix_meta(builder.definitions)
    return builder.definitions


def list_definition(item_ref: str, kind: str, gvk: Mapping[str, str]) -> dict[str, Any]:
    """The definition of a kind's List, as the API server publishes one for every kind."""
    return {
        "description": f"{kind}List is a list of {kind} objects.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": f"List of {kind} objects.",
                "type": "array",
                "items": {"$ref": REF_PREFIX + item_ref},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [{"$ref": f"{REF_PREFIX}{META}.ListMeta"}],
            },
        },
        "x-kubernetes-group-version-kind": [dict(gvk)],
    }


def unknown_fields(group: str, version: str, kind: str, obj: Mapping[str, Any]) -> list[str]:
    """Paths of fields a built-in kind does not have ("spec.containers[0].imagee"), for fieldValidation.

    Empty for kinds without a schema here (nothing can be said to be unknown then).
    """
    found: list[str] = []
    _walk_unknown(group, version, kind, obj, found, prune=False)
    return found


def prune_unknown_fields(group: str, version: str, kind: str, obj: dict[str, Any]) -> list[str]:
    """Drop, in place, the fields a built-in kind does not have (as decoding into Go types does);
    returns their paths, for the warnings of fieldValidation=Warn."""
    found: list[str] = []
    _walk_unknown(group, version, kind, obj, found, prune=True)
    return found


def _walk_unknown(group: str, version: str, kind: str, obj: Any, found: list[str], *, prune: bool) -> None:
    root = definition_name(group, version, kind)
    defs = definitions()
    if root is not None and root in defs:
        _unknown(defs, defs[root], obj, "", found, prune)


def _unknown(
    defs: Mapping[str, dict[str, Any]],
    schema: Mapping[str, Any] | None,
    value: Any,
    path: str,
    found: list[str],
    prune: bool,
) -> None:
    if schema is None:
        return
    resolved = _resolve(defs, schema)
    if resolved is None or resolved.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = resolved.get("properties")
        additional = resolved.get("additionalProperties")
        for key in list(value):
            child_path = f"{path}.{key}" if path else key
            if properties and key in properties:
                _unknown(defs, properties[key], value[key], child_path, found, prune)
            elif isinstance(additional, dict):
                _unknown(defs, additional, value[key], child_path, found, prune)
            elif properties is not None or additional is False:
                found.append(child_path)
                if prune:
                    del value[key]
    elif isinstance(value, list) and isinstance(resolved.get("items"), dict):
        for i, item in enumerate(value):
            _unknown(defs, resolved["items"], item, f"{path}[{i}]", found, prune)


def _fix_meta(defs: dict[str, dict[str, Any]]) -> None:
    """Metadata merges as it does in Kubernetes: finalizers as a set, owner references by uid."""
    meta = defs.get(f"{META}.ObjectMeta", {})
    props = meta.get("properties") or {}
    if "finalizers" in props:
        props["finalizers"].update({"x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set"})
    if "ownerReferences" in props:
        props["ownerReferences"].update(
            {
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "uid",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["uid"],
            }
        )
    fields_v1 = defs.get(f"{META}.ManagedFieldsEntry", {}).get("properties", {}).get("fieldsV1")
    if isinstance(fields_v1, dict):
        fields_v1.pop("allOf", None)
        fields_v1.pop("$ref", None)
        fields_v1.update({"type": "object"})
