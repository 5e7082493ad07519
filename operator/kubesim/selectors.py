"""Label and field selectors with the grammar and semantics of the Kubernetes API server."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesim.errors import ApiError, bad_request

# Label keys are an optional DNS-subdomain prefix and a name; values are at most 63 characters.
_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _NAME + "$")
_VALUE_RE = re.compile(r"^(" + _NAME + ")?$")

_OPERATORS = ("==", "!=", "=", "notin", "in", ">", "<")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: `key op values` (op is =, !=, in, notin, exists, !exists, gt, lt)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                # As in Kubernetes, `k!=v` and `k notin (v)` also select objects without the label.
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present
            case "gt" | "lt":
                try:
                    have, want = int(str(value)), int(self.values[0])
                except (TypeError, ValueError):
                    return False
                return have > want if self.operator == "gt" else have < want
        raise AssertionError(self.operator)

    def __str__(self) -> str:
        match self.operator:
            case "exists":
                return self.key
            case "!exists":
                return "!" + self.key
            case "in" | "notin":
                return f"{self.key} {self.operator} ({','.join(sorted(self.values))})"
            case "gt":
                return f"{self.key}>{self.values[0]}"
            case "lt":
                return f"{self.key}<{self.values[0]}"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse the `labelSelector` query syntax; raises ApiError 400 on malformed input."""
        if not text or not text.strip():
            return cls()
        return cls(tuple(_LabelParser(text).parse()))

    @classmethod
    def from_object(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a metav1.LabelSelector (matchLabels / matchExpressions) into requirements."""
        if not selector:
            return cls()
        requirements = [
            Requirement(k, "=", (str(v),)) for k, v in sorted((selector.get("matchLabels") or {}).items())
        ]
        operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
        for expr in selector.get("matchExpressions") or []:
            op = operators.get(expr.get("operator", ""))
            if op is None:
                raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
            requirements.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
        return cls(tuple(requirements))


class _LabelParser:
    """A small recursive-descent parser for the label selector grammar of k8s.io/apimachinery/pkg/labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _error(self, message: str) -> ApiError:
        return bad_request(f"unable to parse requirement: {message}")

    def _tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch.isspace():
                i += 1
            elif text.startswith(("==", "!="), i):
                tokens.append(text[i : i + 2])
                i += 2
            elif ch in "=!(),<>":
                tokens.append(ch)
                i += 1
            else:
                j = i
                while j < len(text) and not text[j].isspace() and text[j] not in "=!(),<>":
                    j += 1
                tokens.append(text[i:j])
                i = j
        return tokens

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> str | None:
        token = self._peek()
        self.pos += 1
        return token

    def _key(self, token: str | None) -> str:
        if token is None or token in "=!(),<>" or token in ("==", "!="):
            raise self._error(f"found '{token or ''}', expected: identifier")
        if not _KEY_RE.match(token):
            raise self._error(
                f"invalid label key {token!r}: name part must consist of alphanumeric characters"
            )
        return token

    def _value(self, token: str | None) -> str:
        if token is None or token in "(),=!<>":
            raise self._error(f"found '{token or ''}', expected: identifier")
        if not _VALUE_RE.match(token):
            raise self._error(f"invalid label value: {token!r}")
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            requirements.append(self._requirement())
            token = self._next()
            if token is None:
                return requirements
            if token != ",":
                raise self._error(f"found '{token}', expected: ',' or 'end of string'")

    def _requirement(self) -> Requirement:
        token = self._next()
        if token == "!":
            return Requirement(self._key(self._next()), "!exists")
        key = self._key(token)
        op = self._peek()
        if op is None or op == ",":
            return Requirement(key, "exists")
        self.pos += 1
        if op in ("=", "=="):
            return Requirement(key, "=", (self._optional_value(),))
        if op == "!=":
            return Requirement(key, "!=", (self._optional_value(),))
        if op in ("in", "notin"):
            return Requirement(key, op, self._value_set())
        if op in (">", "<"):
            value = self._value(self._next())
            if not value.lstrip("-").isdigit():
                raise self._error(f"for 'Gt', 'Lt' operators, the value must be an integer: {value}")
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        raise self._error(f"found '{op}', expected: {', '.join(repr(o) for o in _OPERATORS)}")

    def _optional_value(self) -> str:
        # `key=` selects objects whose label value is the empty string.
        token = self._peek()
        if token is None or token == ",":
            return ""
        self.pos += 1
        return self._value(token)

    def _value_set(self) -> tuple[str, ...]:
        if self._next() != "(":
            raise self._error("found '', expected: '('")
        values: list[str] = []
        while True:
            token = self._next()
            if token == ")" and not values:
                return ()
            if token == "," or token == ")":
                values.append("")  # an empty element, as in `in (a,,b)` or `in (a,)`
            else:
                values.append(self._value(token))
                token = self._next()
            if token == ")":
                return tuple(values)
            if token != ",":
                raise self._error(f"found '{token or ''}', expected: ',' or ')'")


# ---------------------------------------------------------------------------------------------------------
# Field selectors


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of `field=value` / `field!=value` clauses over the fields a kind exposes."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def matches(self, lookup: Callable[[str], str | None]) -> bool:
        for r in self.requirements:
            value = lookup(r.field)
            value = "" if value is None else value
            if (value == r.value) != (r.operator == "="):
                return False
        return True

    def exact_value(self, field: str) -> str | None:
        """The value `field` is pinned to (`field=value`), used to look objects up by name directly."""
        for r in self.requirements:
            if r.field == field and r.operator == "=":
                return r.value
        return None

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        if not text or not text.strip():
            return cls()
        requirements: list[FieldRequirement] = []
        for clause in _split_unescaped(text, ","):
            if not clause.strip():
                continue
            for op in ("!=", "==", "="):
                parts = _split_unescaped(clause, op, maxsplit=1)
                if len(parts) == 2:
                    field, value = parts[0].strip(), _unescape(parts[1].strip())
                    requirements.append(FieldRequirement(field, "!=" if op == "!=" else "=", value))
                    break
            else:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{clause}'")
        return cls(tuple(requirements))


def _split_unescaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on `sep` where it is not preceded by a backslash escape."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if text.startswith(sep, i) and (maxsplit < 0 or len(parts) < maxsplit):
            # `!=` must not be read as `=` preceded by a stray `!`.
            if sep == "=" and i > 0 and text[i - 1] == "!":
                current.append(text[i])
                i += 1
                continue
            parts.append("".join(current))
            current = []
            i += len(sep)
            continue
        current.append(text[i])
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    """The string form of a dotted field of an object, as field selectors compare it."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
