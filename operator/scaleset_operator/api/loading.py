"""Reading resources from YAML files into the models, with errors that name the file, the object and the field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TypeVar, overload

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from scaleset_operator.api.durations import DURATION_PATTERN
from scaleset_operator.api.models import (
    API_VERSION,
    LOCAL_DATE_TIME_PATTERN,
    WINDOW_DURATION_PATTERN,
    ApiModel,
    ScaleSetSpec,
)
from scaleset_operator.api.rules import UPGRADE_DOMAIN_COUNT_LOCKED

M = TypeVar("M", bound=ApiModel)

# How a person would describe what a pattern wants, instead of quoting the regular expression.
_PATTERN_WORDS: Final[dict[str, str]] = {
    DURATION_PATTERN: "a duration such as 30s, 15m, 1h30m or 2d",
    LOCAL_DATE_TIME_PATTERN: "a date and time as 'YYYY-MM-DD hh:mm'",
    WINDOW_DURATION_PATTERN: "'hh:mm' or a duration such as 3h",
}
_ROOTS: Final = ("spec", "status", "metadata", "apiVersion", "kind")


class InvalidResource(Exception):
    """A resource a user wrote is unusable; str() is one sentence naming the file, object and field."""

    def __init__(
        self,
        source: str | Path | None,
        problems: Sequence[str],
        *,
        kind: str | None = None,
        name: str | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.problems = list(problems)
        self.kind = kind
        self.name = name
        super().__init__(self._sentence())

    def _sentence(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if self.kind:
            prefix += f'{self.kind} "{self.name}": ' if self.name else f"{self.kind}: "
        return prefix + "; ".join(self.problems).rstrip(".") + "."

    def __str__(self) -> str:
        return self._sentence()


# --------------------------------------------------------------------------- YAML


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file, `kind: List` items unfolded; empty documents skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidResource(path, ["no such file"]) from None
    except IsADirectoryError:
        raise InvalidResource(path, ["is a directory, not a file"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidResource(path, [f"cannot be read ({error})"]) from None
    return parse_documents(text, source=path)


def parse_documents(text: str, *, source: str | Path | None = None) -> list[dict[str, Any]]:
    """Like load_documents, for text already read; `source` names it in errors."""
    try:
        raw = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        raise InvalidResource(source, [_yaml_problem(error)]) from None
    documents: list[dict[str, Any]] = []
    for number, document in enumerate(raw, start=1):
        if not isinstance(document, dict):
            raise InvalidResource(
                source, [f"document {number} is {_a(type(document).__name__)} and not a mapping"]
            )
        if document.get("kind") == "List" and isinstance(document.get("items"), list):
            documents.extend(item for item in document["items"] if isinstance(item, dict))
        else:
            documents.append(document)
    return documents


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return f"not valid YAML ({problem})"
    return f"not valid YAML (line {mark.line + 1}, column {mark.column + 1}: {problem})"


# --------------------------------------------------------------------------- models


@overload
def parse_resource(doc: Mapping[str, Any], expected: type[M], *, source: str | Path | None = None) -> M: ...


@overload
def parse_resource(
    doc: Mapping[str, Any], expected: tuple[type[ApiModel], ...], *, source: str | Path | None = None
) -> ApiModel: ...


def parse_resource(
    doc: Mapping[str, Any],
    expected: type[ApiModel] | tuple[type[ApiModel], ...],
    *,
    source: str | Path | None = None,
) -> ApiModel:
    """The model of one document, which must be one of the `expected` kinds; InvalidResource otherwise."""
    models = expected if isinstance(expected, tuple) else (expected,)
    by_kind: dict[str, type[ApiModel]] = {model.KIND: model for model in models}  # type: ignore[attr-defined]
    wanted = _alternatives(list(by_kind))
    kind = doc.get("kind")
    if not kind:
        raise InvalidResource(source, [f"expected {wanted}, found a document without kind"])
    if kind not in by_kind:
        raise InvalidResource(source, [f"expected {wanted}, found {_a(str(kind))}"])
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = str(name) if name else None
    if doc.get("apiVersion") != API_VERSION:
        got = doc.get("apiVersion")
        problem = f"apiVersion must be {API_VERSION}" + (f" (got {got})" if got else "")
        raise InvalidResource(source, [problem], kind=str(kind), name=name)
    try:
        return by_kind[kind].model_validate(dict(doc))
    except ValidationError as error:
        problems = [describe_error(detail) for detail in error.errors(include_url=False)]
        raise InvalidResource(source, problems, kind=str(kind), name=name) from None


@overload
def load_resources(path: Path, expected: type[M], *, skip_other_kinds: bool = False) -> list[M]: ...


@overload
def load_resources(
    path: Path, expected: tuple[type[ApiModel], ...], *, skip_other_kinds: bool = False
) -> list[ApiModel]: ...


def load_resources(
    path: Path, expected: type[ApiModel] | tuple[type[ApiModel], ...], *, skip_other_kinds: bool = False
) -> list[Any]:
    """Every resource of a file as models; other kinds are an error unless skip_other_kinds."""
    models = expected if isinstance(expected, tuple) else (expected,)
    kinds = {model.KIND for model in models}  # type: ignore[attr-defined]
    documents = load_documents(path)
    if skip_other_kinds:
        documents = [document for document in documents if document.get("kind") in kinds]
    return [parse_resource(document, models, source=path) for document in documents]


def load_resource(path: Path, expected: type[M]) -> M:
    """The one resource of kind `expected` in a file (other kinds in the file are ignored)."""
    found = [
        parse_resource(document, expected, source=path)
        for document in load_documents(path)
        if document.get("kind") == expected.KIND  # type: ignore[attr-defined]
    ]
    if len(found) != 1:
        count = "no" if not found else str(len(found))
        raise InvalidResource(path, [f"expected one {expected.KIND}, found {count}"])  # type: ignore[attr-defined]
    return found[0]


# --------------------------------------------------------------------------- error wording


def field_path(loc: Iterable[int | str]) -> str:
    """A pydantic location as a field path: spec.extensions[0].name."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def describe_error(error: ErrorDetails) -> str:
    """One pydantic error in plain words, naming the field by its path as written in YAML."""
    path = field_path(error["loc"]) or "the object"
    kind = error["type"]
    context = error.get("ctx") or {}
    got = _shown(error.get("input"))
    if kind == "missing":
        return f"{path} is required"
    if kind == "extra_forbidden":
        return f"{path} is an unknown field"
    if kind == "greater_than_equal":
        return f"{path} must be at least {context['ge']} (got {got})"
    if kind == "less_than_equal":
        return f"{path} must be at most {context['le']} (got {got})"
    if kind == "greater_than":
        return f"{path} must be greater than {context['gt']} (got {got})"
    if kind == "less_than":
        return f"{path} must be less than {context['lt']} (got {got})"
    if kind in ("literal_error", "enum"):
        return f"{path} must be one of {context['expected']} (got {got})"
    if kind == "string_pattern_mismatch":
        words = _PATTERN_WORDS.get(context.get("pattern", ""), f"text matching {context.get('pattern')}")
        return f"{path} must be {words} (got {got})"
    if kind in ("string_too_short", "too_short") and context.get("min_length") == 1:
        return f"{path} must not be empty"
    if kind in ("string_too_short", "too_short"):
        return f"{path} must have at least {context['min_length']} {'characters' if kind.startswith('string') else 'items'}"
    if kind == "string_too_long":
        return f"{path} must be at most {context['max_length']} characters long"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{path} must be a whole number (got {got})"
    if kind in ("bool_parsing", "bool_type"):
        return f"{path} must be true or false (got {got})"
    if kind == "string_type":
        hint = "; quote it in YAML" if isinstance(error.get("input"), int | float) else ""
        return f"{path} must be a string (got {got}{hint})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{path} must be a mapping (got {_a(_yaml_type(error.get('input')))})"
    if kind == "list_type":
        return f"{path} must be a list (got {_a(_yaml_type(error.get('input')))})"
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        # The models' own checks already name their field from the top of the resource.
        if message.split(".", 1)[0].split("[", 1)[0] in _ROOTS:
            return message
        return f"{path}: {message}"
    return f"{path}: {str(error['msg'])[:1].lower()}{str(error['msg'])[1:]}"


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 60 else f"'{value[:57]}...'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal) or value is None:
        return "null" if value is None else str(value)
    return _a(_yaml_type(value))


def _yaml_type(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def _a(noun: str) -> str:
    if noun in ("null",):
        return noun
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _alternatives(kinds: list[str]) -> str:
    named = [_a(kind) for kind in kinds]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]


# --------------------------------------------------------------------------- rules on change


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (1Gi, 500Mi, 2G, 100m, 1e3) as a number; ValueError when it is not one."""
    # The official client's parser knows every suffix the API server does.
    from kubernetes.utils.quantity import parse_quantity as client_parse_quantity

    try:
        return Decimal(client_parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (use e.g. 500Mi, 1Gi or 2G)") from None


def _empty_dir_limits(spec: ScaleSetSpec) -> dict[str, Any]:
    """sizeLimit of every emptyDir volume of the template, None when the volume is unlimited."""
    volumes = (spec.template.get("spec") or {}).get("volumes") or []
    return {
        volume["name"]: (volume["emptyDir"] or {}).get("sizeLimit")
        for volume in volumes
        if isinstance(volume, dict) and "name" in volume and "emptyDir" in volume
    }


def validate_scaleset_update(old: ScaleSetSpec, new: ScaleSetSpec, upgrade_in_progress: bool) -> list[str]:
    """The changes from `old` to `new` that must be refused; each a sentence naming the field."""
    if not upgrade_in_progress:
        return []
    problems: list[str] = []
    if new.upgrade_domain_count != old.upgrade_domain_count:
        problems.append(
            f"{UPGRADE_DOMAIN_COUNT_LOCKED.message} "
            f"(from {old.upgrade_domain_count} to {new.upgrade_domain_count})"
        )
    old_limits = _empty_dir_limits(old)
    for name, new_limit in _empty_dir_limits(new).items():
        if name not in old_limits or new_limit is None:
            continue  # a new volume, or a limit lifted: nothing shrinks
        field = f"spec.template.spec.volumes[{name}].emptyDir.sizeLimit"
        old_limit = old_limits[name]
        try:
            shrinks = old_limit is None or parse_quantity(new_limit) < parse_quantity(old_limit)
        except ValueError as error:
            problems.append(f"{field} {error}")
            continue
        if shrinks:
            problems.append(
                f"{field} cannot shrink while an upgrade is in progress "
                f"(from {old_limit if old_limit is not None else 'unlimited'} to {new_limit})"
            )
    return problems
