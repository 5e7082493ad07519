"""Custom resources against their CRD's structural schema: pruning, defaulting, validation and CEL rules."""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from kubesim.cel import CelError, compile_rule, is_true, to_cel
from kubesim.errors import Cause, invalid

CRD_GROUP = "apiextensions.k8s.io"

# ---------------------------------------------------------------------------------------------------------
# Field errors, worded as k8s.io/apimachinery/pkg/util/validation/field renders them.


def _show(value: Any) -> str:
    """A bad value as field errors print it: strings quoted, numbers and booleans bare."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueInvalid")


def _type_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueTypeInvalid")


def _required(path: str, detail: str = "") -> Cause:
    return Cause(path, "Required value" + (f": {detail}" if detail else ""), "FieldValueRequired")


def _forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def _not_supported(path: str, value: Any, allowed: list[Any]) -> Cause:
    shown = ", ".join(json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in allowed)
    return Cause(
        path, f"Unsupported value: {_show(value)}: supported values: {shown}", "FieldValueNotSupported"
    )


def _too_long(path: str, limit: int) -> Cause:
    unit = "byte" if limit == 1 else "bytes"
    return Cause(path, f"Too long: may not be more than {limit} {unit}", "FieldValueTooLong")


def _too_many(path: str, actual: int, limit: int) -> Cause:
    return Cause(path, f"Too many: {actual}: must have at most {limit} items", "FieldValueTooMany")


def _duplicate(path: str, value: Any) -> Cause:
    return Cause(path, f"Duplicate value: {_show(value)}", "FieldValueDuplicate")


# Errors after which CEL rules are not evaluated (apiextensions' hasBlockingErr).
_BLOCKING = frozenset(
    {
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
        "FieldValueTypeInvalid",
    }
)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _in_body(path: str) -> str:
    return f"{path} in body" if path else "body"


# ---------------------------------------------------------------------------------------------------------
# Types and formats

_JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXACT_FLOAT_INTEGER = 2**53


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        # The API server reads a JSON number that does not fit in an int64 as a float.
        return "integer" if _INT64_MIN <= value <= _INT64_MAX else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _has_type(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "integer":
        # As the API server's validator: a float counts as an integer only when it is whole and exact
        # (within ±2^53); 9.2e18 is not.
        return actual == "integer" or (
            actual == "number" and float(value).is_integer() and abs(float(value)) <= _EXACT_FLOAT_INTEGER
        )
    if expected == "number":
        return actual in ("integer", "number")
    return actual == expected


_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _format_ok(value: str, fmt: str) -> bool:
    """Whether a string has a format kube-openapi checks; unknown formats pass, as they do there."""
    try:
        if fmt in ("date-time", "datetime"):
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return "T" in value or "t" in value or " " in value
        if fmt == "date":
            date.fromisoformat(value)
            return True
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt == "uuid":
            uuid.UUID(value)
            return True
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
            return True
        if fmt == "ipv6":
            ipaddress.IPv6Address(value)
            return True
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return True
        if fmt == "duration":
            return bool(_DURATION.match(value.replace(" ", "")))
        if fmt == "hostname":
            return bool(_HOSTNAME.match(value))
        if fmt == "email":
            return bool(_EMAIL.match(value))
    except (ValueError, binascii.Error):
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Pruning and defaulting


def _prune(
    value: Any, schema: Mapping[str, Any] | None, path: str, pruned: list[str], keep_meta: bool
) -> Any:
    """Drop fields the schema does not know; collects their paths (fieldValidation reports them)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            if (keep_meta or embedded) and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in properties:
                value[key] = _prune(value[key], properties[key], _child(path, key), pruned, False)
            elif isinstance(additional, dict):
                value[key] = _prune(value[key], additional, _child(path, key), pruned, False)
            elif not (preserve or additional is True):
                del value[key]
                pruned.append(_child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = _prune(item, schema["items"], _index(path, i), pruned, False)
    return value


def _default(value: Any, schema: Mapping[str, Any] | None, skip_meta: bool) -> Any:
    """Fill defaults for missing fields, recursively (into defaulted values too), as the API server does;
    a null in a non-nullable field is dropped first, so its default applies."""
    if schema is None:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, prop in properties.items():
            if skip_meta and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in value and value[key] is None and not prop.get("nullable"):
                del value[key]
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                value[key] = _default(value[key], prop, False)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(value):
                if key in properties:
                    continue
                if value[key] is None and not additional.get("nullable"):
                    del value[key]
                    continue
                value[key] = _default(value[key], additional, False)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        for i, item in enumerate(value):
            value[i] = _default(item, items, False)
    return value


# ---------------------------------------------------------------------------------------------------------
# OpenAPI validation


class _Validator:
    """Checks a value against a structural schema, collecting field errors in the API server's words.

    On update, a node whose value equals its old value is not checked again (validation ratcheting), so
    objects stored under an older schema can still be updated elsewhere.
    """

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def validate(
        self,
        value: Any,
        schema: Mapping[str, Any],
        path: str,
        old: Any = None,
        has_old: bool = False,
        root: bool = False,
    ) -> None:
        if has_old and old == value:
            return
        if value is None:
            if not schema.get("nullable") and (
                schema.get("type") or schema.get("x-kubernetes-int-or-string")
            ):
                expected = (
                    "integer,string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
                )
                self.causes.append(
                    _type_invalid(path, "null", f'{_in_body(path)} must be of type {expected}: "null"')
                )
            return
        if schema.get("x-kubernetes-int-or-string") and not (
            _has_type(value, "integer") or isinstance(value, str)
        ):
            actual = _type_name(value)
            self.causes.append(
                _type_invalid(path, actual, f'{_in_body(path)} must be of type integer,string: "{actual}"')
            )
            return
        expected = schema.get("type")
        if expected and not _has_type(value, expected):
            actual = _type_name(value)
            self.causes.append(
                _type_invalid(path, actual, f'{_in_body(path)} must be of type {expected}: "{actual}"')
            )
            return
        self._keywords(value, schema, path)
        if isinstance(value, dict):
            self._object(value, schema, path, old if has_old and isinstance(old, dict) else None, root)
        elif isinstance(value, list):
            self._array(value, schema, path, old if has_old and isinstance(old, list) else None)
        self._combinators(value, schema, path)

    def _keywords(self, value: Any, schema: Mapping[str, Any], path: str) -> None:
        enum = schema.get("enum")
        if enum is not None and value not in enum:
            self.causes.append(_not_supported(path, value, list(enum)))
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, schema, path)
        if isinstance(value, str):
            self._string(value, schema, path)

    def _number(self, value: float, schema: Mapping[str, Any], path: str) -> None:
        maximum = schema.get("maximum")
        if maximum is not None:
            if schema.get("exclusiveMaximum") and value >= maximum:
                self.causes.append(
                    _invalid(path, value, f"{_in_body(path)} should be less than {_number(maximum)}")
                )
            elif value > maximum:
                self.causes.append(
                    _invalid(
                        path, value, f"{_in_body(path)} should be less than or equal to {_number(maximum)}"
                    )
                )
        minimum = schema.get("minimum")
        if minimum is not None:
            if schema.get("exclusiveMinimum") and value <= minimum:
                self.causes.append(
                    _invalid(path, value, f"{_in_body(path)} should be greater than {_number(minimum)}")
                )
            elif value < minimum:
                self.causes.append(
                    _invalid(
                        path, value, f"{_in_body(path)} should be greater than or equal to {_number(minimum)}"
                    )
                )
        multiple = schema.get("multipleOf")
        if multiple and not math.isclose(value / multiple, round(value / multiple)):
            self.causes.append(
                _invalid(path, value, f"{_in_body(path)} should be a multiple of {_number(multiple)}")
            )
        fmt = schema.get("format")
        if fmt == "int32" and isinstance(value, int) and not -(2**31) <= value < 2**31:
            self.causes.append(_type_invalid(path, value, f"{_in_body(path)} must be of type int32: {value}"))

    def _string(self, value: str, schema: Mapping[str, Any], path: str) -> None:
        max_length = schema.get("maxLength")
        if max_length is not None and len(value) > max_length:
            self.causes.append(_too_long(path, int(max_length)))
        min_length = schema.get("minLength")
        if min_length is not None and len(value) < min_length:
            self.causes.append(
                _invalid(path, value, f"{_in_body(path)} should be at least {int(min_length)} chars long")
            )
        pattern = schema.get("pattern")
        if pattern is not None and not re.search(pattern, value):
            self.causes.append(_invalid(path, value, f"{_in_body(path)} should match '{pattern}'"))
        fmt = schema.get("format")
        if fmt and not _format_ok(value, fmt):
            self.causes.append(
                _type_invalid(path, value, f"{_in_body(path)} must be of type {fmt}: {_show(value)}")
            )

    def _object(
        self,
        value: dict[str, Any],
        schema: Mapping[str, Any],
        path: str,
        old: dict[str, Any] | None,
        root: bool,
    ) -> None:
        for name in schema.get("required") or []:
            if name not in value:
                self.causes.append(_required(_child(path, name)))
        max_properties = schema.get("maxProperties")
        if max_properties is not None and len(value) > max_properties:
            self.causes.append(_too_many(path, len(value), int(max_properties)))
        min_properties = schema.get("minProperties")
        if min_properties is not None and len(value) < min_properties:
            self.causes.append(
                _invalid(
                    path, value, f"{_in_body(path)} should have at least {int(min_properties)} properties"
                )
            )
        if schema.get("x-kubernetes-embedded-resource"):
            for name in ("apiVersion", "kind"):
                if not value.get(name):
                    self.causes.append(_required(_child(path, name), "must not be empty"))
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if root and key in ("apiVersion", "kind"):
                continue
            if root and key == "metadata":
                self._metadata(child, properties.get("metadata"), old)
                continue
            child_path = _child(path, key)
            has_old = old is not None and key in old
            old_child = old.get(key) if old is not None else None
            if key in properties:
                self.validate(child, properties[key], child_path, old_child, has_old)
            elif isinstance(additional, dict):
                self.validate(child, additional, child_path, old_child, has_old)
            elif additional is False and not schema.get("x-kubernetes-preserve-unknown-fields"):
                self.causes.append(_forbidden(child_path, f"{child_path} in body is a forbidden property"))

    def _metadata(self, metadata: Any, schema: Mapping[str, Any] | None, old: dict[str, Any] | None) -> None:
        """Only metadata.name and generateName may be constrained by a CRD's schema."""
        if not isinstance(metadata, dict) or not schema:
            return
        properties = schema.get("properties") or {}
        old_meta = (old or {}).get("metadata") or {}
        for key in ("name", "generateName"):
            if key in properties and key in metadata:
                self.validate(
                    metadata[key], properties[key], f"metadata.{key}", old_meta.get(key), key in old_meta
                )

    def _array(self, value: list[Any], schema: Mapping[str, Any], path: str, old: list[Any] | None) -> None:
        max_items = schema.get("maxItems")
        if max_items is not None and len(value) > max_items:
            self.causes.append(_too_many(path, len(value), int(max_items)))
        min_items = schema.get("minItems")
        if min_items is not None and len(value) < min_items:
            self.causes.append(
                _invalid(path, value, f"{_in_body(path)} should have at least {int(min_items)} items")
            )
        if schema.get("uniqueItems") and _has_duplicates(value):
            self.causes.append(_invalid(path, value, f"{_in_body(path)} shouldn't contain duplicates"))
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    self.causes.append(_duplicate(_index(path, i), item))
                seen.append(item)
        keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
        if list_type == "map" and keys:
            seen_keys: list[Any] = []
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                identity = {k: item.get(k) for k in keys if k in item}
                if identity in seen_keys:
                    self.causes.append(_duplicate(_index(path, i), identity))
                seen_keys.append(identity)
        items = schema.get("items")
        if isinstance(items, dict):
            old_items = _correlate_items(value, old, schema)
            for i, item in enumerate(value):
                has_old, old_item = old_items[i]
                self.validate(item, items, _index(path, i), old_item, has_old)

    def _combinators(self, value: Any, schema: Mapping[str, Any], path: str) -> None:
        for sub in schema.get("allOf") or []:
            nested = _Validator()
            nested.validate(value, sub, path)
            if nested.causes:
                self.causes.extend(nested.causes)
        any_of = schema.get("anyOf")
        if any_of and not any(_passes(value, sub, path) for sub in any_of):
            self.causes.append(
                _invalid(path, value, f"{_in_body(path)} must validate at least one schema (anyOf)")
            )
        one_of = schema.get("oneOf")
        if one_of and sum(_passes(value, sub, path) for sub in one_of) != 1:
            self.causes.append(
                _invalid(path, value, f"{_in_body(path)} must validate one and only one schema (oneOf)")
            )
        negated = schema.get("not")
        if isinstance(negated, dict) and _passes(value, negated, path):
            self.causes.append(
                _invalid(path, value, f"{_in_body(path)} should not validate the schema (not)")
            )


def _passes(value: Any, schema: Mapping[str, Any], path: str) -> bool:
    nested = _Validator()
    nested.validate(value, schema, path)
    return not nested.causes


def _has_duplicates(values: list[Any]) -> bool:
    seen: list[Any] = []
    for value in values:
        if value in seen:
            return True
        seen.append(value)
    return False


def _correlate_items(
    value: list[Any], old: list[Any] | None, schema: Mapping[str, Any]
) -> list[tuple[bool, Any]]:
    """Which old item each new item of a list continues: map lists by their keys; other lists none."""
    result: list[tuple[bool, Any]] = [(False, None)] * len(value)
    keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
    if old is None or schema.get("x-kubernetes-list-type") != "map" or not keys:
        return result
    by_key = {
        json.dumps([item.get(k) for k in keys], sort_keys=True): item
        for item in old
        if isinstance(item, dict)
    }
    for i, item in enumerate(value):
        if isinstance(item, dict):
            key = json.dumps([item.get(k) for k in keys], sort_keys=True)
            if key in by_key:
                result[i] = (True, by_key[key])
    return result


# ---------------------------------------------------------------------------------------------------------
# x-kubernetes-validations


class _RuleChecker:
    """Evaluates the CEL rules of every schema node, with `self` the node and `oldSelf` its old value."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def check(
        self,
        value: Any,
        schema: Mapping[str, Any],
        path: str,
        old: Any = None,
        has_old: bool = False,
        root: bool = False,
    ) -> None:
        if value is None or (has_old and old == value):
            return
        rules = schema.get("x-kubernetes-validations") or []
        if rules:
            self._rules(value, schema, path, old, has_old, root, rules)
        if isinstance(value, dict):
            properties = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            old_map = old if has_old and isinstance(old, dict) else None
            for key, child in value.items():
                if root and key in ("apiVersion", "kind", "metadata"):
                    continue
                sub = properties.get(key) or (additional if isinstance(additional, dict) else None)
                if sub is None:
                    continue
                child_has_old = old_map is not None and key in old_map
                self.check(
                    child, sub, _child(path, key), old_map.get(key) if old_map else None, child_has_old
                )
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            correlated = _correlate_items(value, old if has_old and isinstance(old, list) else None, schema)
            for i, item in enumerate(value):
                item_has_old, old_item = correlated[i]
                self.check(item, schema["items"], _index(path, i), old_item, item_has_old)

    def _rules(
        self,
        value: Any,
        schema: Mapping[str, Any],
        path: str,
        old: Any,
        has_old: bool,
        root: bool,
        rules: list[Mapping[str, Any]],
    ) -> None:
        activation: dict[str, Any] = {"self": to_cel(_rule_view(value, root), schema)}
        if has_old and old is not None:
            activation["oldSelf"] = to_cel(_rule_view(old, root), schema)
        node_type = schema.get("type") or "object"
        for rule in rules:
            text = str(rule.get("rule", ""))
            try:
                compiled = compile_rule(text)
            except CelError as exc:
                self.causes.append(_invalid(path, node_type, f"{exc} evaluating rule: {text}"))
                continue
            if compiled.uses_old_self and "oldSelf" not in activation:
                continue  # a transition rule: only an update of an existing value is checked
            try:
                passed = is_true(compiled.evaluate(activation))
            except CelError as exc:
                self.causes.append(_invalid(path, node_type, f"{exc} evaluating rule: {text}"))
                continue
            if passed:
                continue
            message = _rule_message(rule, activation)
            field_path = _join_field_path(path, str(rule.get("fieldPath", "") or ""))
            reason = rule.get("reason")
            if reason == "FieldValueForbidden":
                self.causes.append(_forbidden(field_path, message))
            elif reason == "FieldValueRequired":
                self.causes.append(_required(field_path, message))
            elif reason == "FieldValueDuplicate":
                self.causes.append(_duplicate(field_path, node_type))
            else:
                self.causes.append(_invalid(field_path, node_type, message))


def _rule_view(value: Any, root: bool) -> Any:
    """What `self` shows of the object at the root: metadata only has name and generateName there."""
    if not root or not isinstance(value, dict):
        return value
    view = dict(value)
    metadata = value.get("metadata")
    if isinstance(metadata, dict):
        view["metadata"] = {k: metadata[k] for k in ("name", "generateName") if k in metadata}
    return view


def _rule_message(rule: Mapping[str, Any], activation: Mapping[str, Any]) -> str:
    expression = rule.get("messageExpression")
    if expression:
        try:
            result = compile_rule(str(expression)).evaluate(activation)
            if isinstance(result, str) and result.strip():
                return str(result)
        except CelError:
            pass
    message = rule.get("message")
    if message:
        return str(message)
    return f"failed rule: {rule.get('rule', '')}"


def _join_field_path(path: str, field_path: str) -> str:
    if not field_path:
        return path
    if field_path.startswith("."):
        return (path + field_path) if path else field_path[1:]
    return (path + field_path) if field_path.startswith("[") else _child(path, field_path)


# ---------------------------------------------------------------------------------------------------------
# The schema of one served version of a CRD

_PERMISSIVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _version_entry(crd: Mapping[str, Any], version: str) -> Mapping[str, Any]:
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            return dict(entry)
    raise KeyError(f"the CustomResourceDefinition does not serve version {version!r}")


class CustomResourceSchema:
    """Admission of custom resources of one CRD version: prune, default, validate, then CEL rules."""

    def __init__(self, crd: dict[str, Any], version: str) -> None:
        spec = crd.get("spec") or {}
        entry = _version_entry(crd, version)
        self.group: str = spec.get("group", "")
        self.kind: str = (spec.get("names") or {}).get("kind", "")
        self.version = version
        schema = (entry.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
        self.schema: dict[str, Any] = schema if isinstance(schema, dict) else dict(_PERMISSIVE)
        subresources = entry.get("subresources") or spec.get("subresources") or {}
        self.has_status_subresource = "status" in subresources

    def admit(self, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """The object as stored after a create (old None) or update of the main resource.

        With a status subresource, the main resource cannot set status: it is dropped on create and
        kept from the old object on update, as the API server does.
        """
        obj = copy.deepcopy(new)
        if self.has_status_subresource:
            if old is None or "status" not in old:
                obj.pop("status", None)
            else:
                obj["status"] = copy.deepcopy(old["status"])
        self._normalize(obj)
        self._check(obj, old)
        return obj

    def admit_status(self, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """The object as stored after a write to the status subresource: old, with new's status."""
        obj = copy.deepcopy(old)
        if "status" in new:
            obj["status"] = copy.deepcopy(new["status"])
        else:
            obj.pop("status", None)
        managed = (new.get("metadata") or {}).get("managedFields")
        if managed is not None:
            obj.setdefault("metadata", {})["managedFields"] = copy.deepcopy(managed)
        self._normalize(obj)
        self._check(obj, old)
        return obj

    def unknown_fields(self, obj: dict[str, Any]) -> list[str]:
        """Paths of fields the schema would prune (fieldValidation=Strict rejects them, Warn warns)."""
        pruned: list[str] = []
        _prune(copy.deepcopy(obj), self.schema, "", pruned, True)
        return pruned

    def _normalize(self, obj: dict[str, Any]) -> None:
        _prune(obj, self.schema, "", [], True)
        _default(obj, self.schema, True)

    def _check(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        causes = self.validate(obj, old)
        if causes:
            name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get(
                "generateName", ""
            )
            raise invalid(self.kind, str(name), causes, self.group)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        """Field errors of an (already pruned and defaulted) object; CEL rules run only if nothing blocks."""
        validator = _Validator()
        validator.validate(obj, self.schema, "", old, old is not None, root=True)
        causes = list(validator.causes)
        if any(c.reason in _BLOCKING for c in causes):
            causes.append(
                _invalid(
                    "<nil>",
                    None,
                    "some validation rules were not checked because the object was invalid; "
                    "correct the existing errors to complete validation",
                )
            )
            return causes
        checker = _RuleChecker()
        checker.check(obj, self.schema, "", old, old is not None, root=True)
        return causes + checker.causes


# ---------------------------------------------------------------------------------------------------------
# Structural checks on a CRD itself


def validate_crd(crd: dict[str, Any]) -> None:
    """The checks the API server makes on a CustomResourceDefinition; 422 naming the field otherwise."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = str((crd.get("metadata") or {}).get("name", ""))
    causes: list[Cause] = []
    group = spec.get("group") or ""
    if not group:
        causes.append(_required("spec.group"))
    elif "." not in group:
        causes.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
    plural = names.get("plural") or ""
    kind = names.get("kind") or ""
    if not plural:
        causes.append(_required("spec.names.plural"))
    elif not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", plural):
        causes.append(
            _invalid(
                "spec.names.plural",
                plural,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
            )
        )
    if not kind:
        causes.append(_required("spec.names.kind"))
    if plural and group and name != f"{plural}.{group}":
        causes.append(
            _invalid("metadata.name", name, f'must be spec.names.plural+"."+spec.group ({plural}.{group})')
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(_not_supported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(_required("spec.versions", "must have exactly one version marked as storage version"))
    else:
        storage = sum(1 for v in versions if v.get("storage"))
        if storage != 1:
            causes.append(
                _invalid(
                    "spec.versions",
                    [v.get("name") for v in versions],
                    "must have exactly one version marked as storage version",
                )
            )
        seen: set[str] = set()
        schemas = [(version.get("schema") or {}).get("openAPIV3Schema") for version in versions]
        # The API server judges a schema that every version shares once, as `spec.validation` (where
        # its internal form keeps it), and a schema of one version at that version.
        shared = schemas[0] is not None and all(schema == schemas[0] for schema in schemas)
        if shared:
            causes.extend(_structural(schemas[0], "spec.validation.openAPIV3Schema"))
        for i, (version, schema) in enumerate(zip(versions, schemas, strict=True)):
            path = f"spec.versions[{i}]"
            version_name = version.get("name") or ""
            if not version_name:
                causes.append(_required(f"{path}.name"))
            elif version_name in seen:
                causes.append(_duplicate(f"{path}.name", version_name))
            seen.add(version_name)
            schema_path = f"{path}.schema.openAPIV3Schema"
            if schema is None:
                causes.append(_required(schema_path, "schemas are required"))
            elif not shared:
                causes.extend(_structural(schema, schema_path))
    if causes:
        raise invalid("CustomResourceDefinition", name, causes, CRD_GROUP)


def _structural(schema: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(schema, dict):
        return [_invalid(path, schema, "must be an object")]
    if schema.get("type") != "object":
        causes.append(_invalid(f"{path}.type", schema.get("type", ""), "must be object at the root"))
    metadata = (schema.get("properties") or {}).get("metadata")
    if isinstance(metadata, dict):
        extra = set(metadata.get("properties") or {}) - {"name", "generateName"}
        if extra or set(metadata) - {"type", "properties", "description"}:
            causes.append(
                _forbidden(
                    f"{path}.properties[metadata]",
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                )
            )
    causes.extend(_structural_node(schema, path, in_validation=False, root=True))
    return causes


def _field_path_tokens(text: str) -> Iterator[str]:
    """A rule's fieldPath split as the API server splits it: '.', '[' and ']', quoted strings, names."""
    i = 0
    while i < len(text):
        if text[i] in ".[]":
            yield text[i]
            i += 1
        elif text[i] == "'":
            end = i + 1
            while end < len(text) and not (text[end] == "'" and text[end - 1] != "\\"):
                end += 1
            yield text[i : end + 1]
            i = end + 1
        else:
            end = i
            while end < len(text) and text[end] not in ".[]":
                end += 1
            yield text[i:end]
            i = end


def _valid_field_path(text: str, node: Mapping[str, Any]) -> bool:
    """Whether a rule's fieldPath names a field of its node's schema (`.a.b`, `['a']`, map keys)."""
    tokens = _field_path_tokens(text)
    schema: Any = node
    for token in tokens:
        if token == "[":
            quoted = next(tokens, "")
            if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'" or next(tokens, "") != "]":
                return False
            name = quoted[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        elif token == ".":
            name = next(tokens, "")
            if not name:
                return False
        else:
            return False
        if not isinstance(schema, Mapping):
            return False
        if schema.get("properties") is not None:
            if name not in schema["properties"]:
                return False
            schema = schema["properties"][name]
        elif isinstance(schema.get("additionalProperties"), Mapping):
            schema = schema["additionalProperties"]
        else:
            return False
    return True


def _structural_node(node: Any, path: str, *, in_validation: bool, root: bool = False) -> Iterator[Cause]:
    if not isinstance(node, dict):
        yield _invalid(path, node, "must be a schema object")
        return
    kind = node.get("type")
    if kind is not None and kind not in _JSON_TYPES:
        yield _not_supported(f"{path}.type", kind, list(_JSON_TYPES))
    free_form = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if not in_validation and not root and not kind and not free_form:
        yield _required(f"{path}.type", "must not be empty for specified object fields")
    if kind == "array" and not in_validation and not isinstance(node.get("items"), dict):
        yield _required(f"{path}.items", "must be specified")
    if node.get("properties") and node.get("additionalProperties") not in (None, False):
        yield _forbidden(
            f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive"
        )
    if node.get("additionalProperties") is False and not in_validation:
        yield _forbidden(f"{path}.additionalProperties", "must not be used in structural schemas")
    list_type = node.get("x-kubernetes-list-type")
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        yield _not_supported(f"{path}.x-kubernetes-list-type", list_type, ["atomic", "set", "map"])
    if list_type == "map":
        keys = node.get("x-kubernetes-list-map-keys") or []
        if not keys:
            yield _required(
                f"{path}.x-kubernetes-list-map-keys", 'must not be empty if x-kubernetes-list-type is "map"'
            )
        items = node.get("items") or {}
        if isinstance(items, dict) and items.get("type") not in (None, "object"):
            yield _invalid(
                f"{path}.items.type",
                items.get("type"),
                'must be object if parent array\'s x-kubernetes-list-type is "map"',
            )
    for name, child in (node.get("properties") or {}).items():
        yield from _structural_node(child, f"{path}.properties[{name}]", in_validation=in_validation)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _structural_node(
            node["additionalProperties"], f"{path}.additionalProperties", in_validation=in_validation
        )
    if isinstance(node.get("items"), dict):
        yield from _structural_node(node["items"], f"{path}.items", in_validation=in_validation)
    for keyword in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(node.get(keyword) or []):
            yield from _structural_node(sub, f"{path}.{keyword}[{i}]", in_validation=True)
    if isinstance(node.get("not"), dict):
        yield from _structural_node(node["not"], f"{path}.not", in_validation=True)
    for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
        rule_path = f"{path}.x-kubernetes-validations[{i}]"
        text = rule.get("rule") if isinstance(rule, dict) else None
        if not text:
            yield _required(f"{rule_path}.rule")
            continue
        try:
            compile_rule(str(text))
        except CelError as exc:
            yield _invalid(f"{rule_path}.rule", text, str(exc))
        field_path = rule.get("fieldPath")
        if isinstance(field_path, str) and field_path:
            if not field_path.strip():
                yield _invalid(f"{rule_path}.fieldPath", field_path, "must be non-empty if specified")
            if "\n" in field_path or "\r" in field_path:
                yield _invalid(f"{rule_path}.fieldPath", field_path, "must not contain line breaks")
            if not _valid_field_path(field_path, node):
                yield _invalid(f"{rule_path}.fieldPath", field_path, "must be a valid path")
        if rule.get("reason") not in (
            None,
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        ):
            yield _not_supported(
                f"{rule_path}.reason",
                rule.get("reason"),
                ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"],
            )
    if "default" in node and not in_validation and not root:
        default = copy.deepcopy(node["default"])
        pruned: list[str] = []
        _prune(default, node, "", pruned, False)
        if pruned:
            yield _invalid(
                f"{path}.default", node["default"], f"must not have unknown fields: {', '.join(pruned)}"
            )
        checker = _Validator()
        checker.validate(default, node, "")
        for cause in checker.causes:
            yield _invalid(f"{path}.default", node["default"], cause.message)
        # The API server judges a default by its node's CEL rules too, as written: the defaults of
        # the fields inside it are not filled in first.
        rules = _RuleChecker()
        rules.check(default, node, "")
        for cause in rules.causes:
            yield _invalid(f"{path}.default", node.get("type") or "object", cause.message)
