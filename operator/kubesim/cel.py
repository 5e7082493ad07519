"""CEL for x-kubernetes-validations: compiling rules once, typing values as the API server does, evaluating."""

from __future__ import annotations

import base64
import functools
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

_ENVIRONMENT = celpy.Environment()


class CelError(Exception):
    """A rule that does not compile, or an evaluation that fails (no such key, no overload...)."""


def _string_list(values: Any) -> list[str]:
    return [str(v) for v in values]


def _lower_ascii(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(text).lower())


def _upper_ascii(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(text).upper())


def _trim(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(text).strip())


def _split(text: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])


def _join(values: celtypes.ListType, separator: celtypes.StringType | None = None) -> celtypes.StringType:
    return celtypes.StringType(str(separator or "").join(_string_list(values)))


def _replace(
    text: celtypes.StringType, old: celtypes.StringType, new: celtypes.StringType
) -> celtypes.StringType:
    return celtypes.StringType(str(text).replace(str(old), str(new)))


def _index_of(container: Any, item: Any) -> celtypes.IntType:
    if isinstance(container, str):
        return celtypes.IntType(container.find(str(item)))
    return celtypes.IntType(list(container).index(item) if item in container else -1)


def _last_index_of(container: Any, item: Any) -> celtypes.IntType:
    if isinstance(container, str):
        return celtypes.IntType(container.rfind(str(item)))
    items = list(container)
    return celtypes.IntType(len(items) - 1 - items[::-1].index(item) if item in items else -1)


def _substring(text: celtypes.StringType, start: celtypes.IntType, end: Any = None) -> celtypes.StringType:
    value = str(text)
    stop = len(value) if end is None else int(end)
    if not 0 <= int(start) <= stop <= len(value):
        raise ValueError(f"index out of range: {start}")
    return celtypes.StringType(value[int(start) : stop])


def _is_sorted(values: celtypes.ListType) -> celtypes.BoolType:
    items: list[Any] = list(values)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(values: celtypes.ListType) -> Any:
    items: list[Any] = list(values)
    if not items:
        return celtypes.IntType(0)
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


def _min(values: celtypes.ListType) -> Any:
    items: list[Any] = list(values)
    return min(items)


def _max(values: celtypes.ListType) -> Any:
    items: list[Any] = list(values)
    return max(items)


# The Kubernetes CEL libraries beyond the CEL standard that rules commonly use (strings and lists).
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii,
    "trim": _trim,
    "split": _split,
    "join": _join,
    "replace": _replace,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _substring,
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _min,
    "max": _max,
}


@dataclass(frozen=True)
class CompiledRule:
    """A compiled CEL expression, ready to evaluate many times."""

    text: str
    program: celpy.Runner
    uses_old_self: bool

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        try:
            result = self.program.evaluate(dict(activation))
        except CELEvalError as exc:
            raise CelError(_eval_message(exc)) from exc
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
            raise CelError(str(exc)) from exc
        if isinstance(result, CELEvalError):
            raise CelError(_eval_message(result))
        return result


_OLD_SELF = re.compile(r"\boldSelf\b")


@functools.lru_cache(maxsize=4096)
def compile_rule(text: str) -> CompiledRule:
    """Compile a rule (cached: the same rules validate every object of a kind)."""
    try:
        ast = _ENVIRONMENT.compile(text)
        program = _ENVIRONMENT.program(ast, functions=_FUNCTIONS)
    except Exception as exc:  # celpy raises lark errors of several kinds for bad syntax
        raise CelError(f"compilation failed: {_first_line(str(exc))}") from exc
    return CompiledRule(text, program, bool(_OLD_SELF.search(text)))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _eval_message(error: CELEvalError) -> str:
    raw = str(error.args[0]) if error.args else str(error)
    missing = re.match(r"no such member in mapping: '?([^']*)'?", raw)
    if missing:
        return f"no such key: {missing.group(1)}"
    if raw.startswith("found no matching overload"):
        return "no matching overload"
    return _first_line(raw)


# ---------------------------------------------------------------------------------------------------------
# Typing values by their schema, as the API server's CEL type provider does.

_RESERVED = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function"),
        *("if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"),
    }
)


def escape_property_name(name: str) -> str | None:
    """The name a property has in CEL (`x-y` is `x__dash__y`); None if CEL cannot name it."""
    if name in _RESERVED:
        return f"__{name}__"
    if not re.fullmatch(r"[A-Za-z_.\-/][A-Za-z0-9_.\-/]*", name):
        return None
    return (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )


def to_cel(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """A JSON value as a CEL value of the type its schema declares (number is double, date-time a timestamp)."""
    if value is None:
        return None
    if schema is None or schema.get("x-kubernetes-int-or-string") or not schema.get("type"):
        if schema is not None and schema.get("properties") and isinstance(value, dict):
            return _object(value, schema)
        return json_to_cel(value)
    kind = schema.get("type")
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    if kind == "integer" and isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return celtypes.IntType(int(value))
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return celtypes.DoubleType(float(value))  # what the API server reads such a number as
    if isinstance(value, float) and kind == "integer":
        return celtypes.DoubleType(value)
    if kind == "string" and isinstance(value, str):
        return _formatted_string(value, schema.get("format"))
    if kind == "array" and isinstance(value, list):
        items = schema.get("items")
        return celtypes.ListType([to_cel(item, items) for item in value])
    if kind == "object" and isinstance(value, dict):
        return _object(value, schema)
    return json_to_cel(value)


def _object(value: Mapping[str, Any], schema: Mapping[str, Any]) -> celtypes.MapType:
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    result: dict[Any, Any] = {}
    for key, child in value.items():
        if key in properties:
            name = escape_property_name(key)
            if name is not None:
                result[celtypes.StringType(name)] = to_cel(child, properties[key])
        elif isinstance(additional, dict):
            result[celtypes.StringType(key)] = to_cel(child, additional)
        else:
            result[celtypes.StringType(key)] = json_to_cel(child)
    return celtypes.MapType(result)


def _formatted_string(value: str, fmt: str | None) -> Any:
    try:
        if fmt in ("date-time", "datetime"):
            return celtypes.TimestampType(value)
        if fmt == "date":
            return celtypes.TimestampType(value + "T00:00:00Z")
        if fmt == "duration":
            return celtypes.DurationType(value)
        if fmt == "byte":
            return celtypes.BytesType(base64.b64decode(value))
    except (ValueError, TypeError):
        pass
    return celtypes.StringType(value)


def is_true(result: Any) -> bool:
    return isinstance(result, bool | celtypes.BoolType) and bool(result)
