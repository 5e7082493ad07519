"""Generate the CustomResourceDefinitions, the CRD bundle of the manifests and docs/api.md from the models."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, NoDefault
from pydantic_core import core_schema

from scaleset_operator.api.durations import DURATION_PATTERN
from scaleset_operator.api.models import (
    GROUP,
    VERSION,
    ApiModel,
    ImageCatalog,
    MaintenanceConfiguration,
    ScaleSet,
    UpgradePolicy,
)

Schema = dict[str, Any]

HEADER: Final = "# Generated from operator/scaleset_operator/api/models.py by `make crds`; do not edit.\n"
DOCS_PATH: Final = "docs/api.md"
BUNDLE_PATH: Final = "manifests/crds.yaml"

# Everything a structural schema of apiextensions.k8s.io/v1 may say that the models use;
# anything else coming out of pydantic is a bug in this generator, not something to pass on.
_ALLOWED_KEYWORDS: Final = frozenset(
    {
        "description",
        "type",
        "format",
        "enum",
        "default",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "items",
        "required",
        "properties",
        "additionalProperties",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
# The order keys are written in, so that a node reads top-down: what it is, then its parts.
_KEY_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "default",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-validations",
)


@dataclass(frozen=True)
class PrinterColumn:
    """One additionalPrinterColumn of `kubectl get`."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


AGE: Final = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class CrdKind:
    """How one model is served: names, scope, subresources and columns."""

    model: type[ApiModel]
    plural: str
    namespaced: bool
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    scale: bool = False

    @property
    def kind(self) -> str:
        kind: str = self.model.KIND  # type: ignore[attr-defined]
        return kind

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{self.crd_name}.yaml"


KINDS: Final[tuple[CrdKind, ...]] = (
    CrdKind(
        model=ScaleSet,
        plural=ScaleSet.PLURAL,
        namespaced=True,
        short_names=("sset", "vmss"),
        categories=("fleet", "all"),
        scale=True,
        printer_columns=(
            PrinterColumn("Desired", "integer", ".spec.replicas", "Instances wanted."),
            PrinterColumn("Ready", "integer", ".status.readyReplicas", "Instances whose pod is Ready."),
            PrinterColumn(
                "Updated", "integer", ".status.updatedReplicas", "Instances on the newest revision."
            ),
            PrinterColumn("Phase", "string", ".status.upgrade.phase", "What the upgrade is doing."),
            PrinterColumn(
                "UD", "integer", ".status.upgrade.currentUpgradeDomain", "The upgrade domain being upgraded."
            ),
            PrinterColumn(
                "Slot",
                "string",
                ".status.staged.production",
                "Staged mode: the slot in production.",
                priority=1,
            ),
            AGE,
        ),
    ),
    CrdKind(
        model=UpgradePolicy,
        plural=UpgradePolicy.PLURAL,
        namespaced=True,
        short_names=("upol",),
        categories=("fleet",),
        printer_columns=(
            PrinterColumn("Mode", "string", ".spec.mode", "Automatic, Rolling, Manual or Staged."),
            PrinterColumn(
                "Batch%",
                "integer",
                ".spec.rollingUpgrade.maxBatchInstancePercent",
                "Largest share of instances upgraded in one batch.",
            ),
            PrinterColumn("Method", "string", ".spec.updateMethod", "InPlaceIfPossible or Reimage."),
            AGE,
        ),
    ),
    CrdKind(
        model=MaintenanceConfiguration,
        plural=MaintenanceConfiguration.PLURAL,
        namespaced=False,
        short_names=("mcfg",),
        categories=("fleet",),
        printer_columns=(
            PrinterColumn(
                "Scope", "string", ".spec.maintenanceScope", "The kind of updates the window controls."
            ),
            PrinterColumn("Recur", "string", ".spec.window.recurEvery", "How often the window opens."),
            PrinterColumn("Duration", "string", ".spec.window.duration", "How long the window stays open."),
            PrinterColumn("Start", "string", ".spec.window.startDateTime", "First opening.", priority=1),
            AGE,
        ),
    ),
    CrdKind(
        model=ImageCatalog,
        plural=ImageCatalog.PLURAL,
        namespaced=False,
        short_names=("icat",),
        categories=("fleet",),
        printer_columns=(AGE,),
    ),
)


# --------------------------------------------------------------------------- schemas


class _CrdJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, bent toward what the API server wants to read."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        # Optional fields are simply not required; the API server prunes nulls of fields
        # that are not nullable, so a client writing None does no harm.
        return self.generate_inner(schema["schema"])

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default_factory" in schema:
            if schema.get("default_factory_takes_data"):
                return NoDefault
            value = schema["default_factory"]()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                # An empty object lets the API server fill in the nested defaults, which is
                # what the model's factory does too.
                return {}
            return NoDefault if value in ([], {}) else value
        default = schema.get("default", NoDefault)
        return NoDefault if default is None else default


def _ordered(node: Schema) -> Schema:
    unknown = set(node) - _ALLOWED_KEYWORDS
    if unknown:
        raise ValueError(f"schema keywords a CRD cannot carry: {sorted(unknown)} in {node}")
    return {key: node[key] for key in _KEY_ORDER if key in node}


def _structural(node: Schema, definitions: dict[str, Schema]) -> Schema:
    """Inline references and drop or translate what a structural schema must not contain."""
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(definitions[node.pop("$ref").rsplit("/", 1)[-1]])
        # The field's own description and default win over those of the referenced type.
        node = {**_structural(target, definitions), **node}
    if "anyOf" in node or "oneOf" in node or "allOf" in node:
        raise ValueError(f"unions cannot be expressed structurally: {node}")
    node.pop("title", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    extra = node.get("additionalProperties")
    if extra is False:
        del node["additionalProperties"]  # pruning drops unknown fields; the models refuse them
    elif extra is True or extra == {}:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        node["additionalProperties"] = _structural(extra, definitions)
    if "properties" in node:
        node["properties"] = {
            name: _structural(prop, definitions) for name, prop in node["properties"].items()
        }
    if "items" in node:
        node["items"] = _structural(node["items"], definitions)
    if "x-kubernetes-validations" in node:
        node["x-kubernetes-validations"] = [
            {key: rule[key] for key in ("rule", "message", "fieldPath", "reason") if key in rule}
            for rule in node["x-kubernetes-validations"]
        ]
    if "type" not in node:
        node["type"] = "object" if "properties" in node else _enum_type(node)
    return _ordered(node)


def _enum_type(node: Schema) -> str:
    values = node.get("enum", [])
    if values and all(isinstance(v, str) for v in values):
        return "string"
    raise ValueError(f"schema node without a type: {node}")


def openapi_schema(model: type[ApiModel]) -> Schema:
    """The openAPIV3Schema of a resource model: structural, references inlined."""
    generated = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdJsonSchema)
    root = _structural(generated, generated.pop("$defs", {}))
    properties = root["properties"]
    properties["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation of an object.",
        "type": "string",
    }
    properties["kind"] = {
        "description": "Kind is a string value representing the REST resource this object represents.",
        "type": "string",
    }
    # The API server owns metadata and validates it itself; a schema here may only narrow name.
    properties["metadata"] = {"type": "object"}
    required = [name for name in root.get("required", []) if name not in ("apiVersion", "kind", "metadata")]
    if required:
        root["required"] = required
    else:
        root.pop("required", None)
    root["properties"] = {
        name: properties[name]
        for name in ("apiVersion", "kind", "metadata", "spec", "status")
        if name in properties
    }
    return _ordered(root)


def build_crd(kind: CrdKind) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.labelSelector",
        }
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": kind.kind.lower(),
        "shortNames": list(kind.short_names),
        "categories": list(kind.categories),
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {
                "app.kubernetes.io/name": "scaleset-operator",
                "app.kubernetes.io/part-of": "scaleset-operator",
            },
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind.model)},
                    "subresources": subresources,
                    "additionalPrinterColumns": [column.definition() for column in kind.printer_columns],
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """The CRDs of all four kinds, in the order of KINDS."""
    return [build_crd(kind) for kind in KINDS]


def crd_for(model: type[ApiModel]) -> dict[str, Any]:
    """The CRD serving `model`."""
    for kind in KINDS:
        if kind.model is model:
            return build_crd(kind)
    raise KeyError(model.__name__)


# --------------------------------------------------------------------------- rendering


class _Dumper(yaml.SafeDumper):
    """Block style throughout, no anchors, and long descriptions kept on one line so diffs stay readable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_presenter)


def render_yaml(documents: Sequence[dict[str, Any]]) -> str:
    """Documents as one multi-document YAML text with the generated-file header."""
    body = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=4096, explicit_start=True)
    return HEADER + body


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_of(node: Schema) -> str:
    if node.get("type") == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if node.get("type") == "object" and "additionalProperties" in node:
        return f"map[string]{_type_of(node['additionalProperties'])}"
    if node.get("pattern") == DURATION_PATTERN:
        return "duration"
    return str(node.get("type", "object"))


def _constraints(node: Schema) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append(" \\| ".join(f"`{value}`" for value in node["enum"]))
    if "minimum" in node and "maximum" in node:
        parts.append(f"{node['minimum']}..{node['maximum']}")
    elif "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    elif "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if node.get("minLength") == 1 or node.get("minItems") == 1:
        parts.append("not empty")
    if "maxLength" in node:
        parts.append(f"at most {node['maxLength']} characters")
    if "pattern" in node and node["pattern"] != DURATION_PATTERN:
        parts.append(f"pattern `{_markdown_cell(node['pattern'])}`")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        parts.append("free-form")
    parts.extend(_markdown_cell(rule["message"]) for rule in node.get("x-kubernetes-validations", []))
    return "; ".join(parts)


def _rows(node: Schema, path: str, required: bool) -> Iterator[str]:
    default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
    description = _markdown_cell(node.get("description", ""))
    name = f"**{path}**" if required else path
    yield f"| {name} | {_type_of(node)} | {default} | {_constraints(node)} | {description} |"
    if node.get("type") == "array" and node.get("items", {}).get("type") == "object":
        node, path = node["items"], f"{path}[]"
    if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        for child, child_node in node.get("properties", {}).items():
            yield from _rows(child_node, f"{path}.{child}", child in node.get("required", []))


def render_api_reference(crds: Sequence[dict[str, Any]]) -> str:
    """docs/api.md: every field of every kind with its type, default, bounds and description."""
    lines = [
        "<!-- Generated from operator/scaleset_operator/api/models.py by `make crds`; do not edit. -->",
        f"# API reference: `{GROUP}/{VERSION}`",
        "",
        "Fields in **bold** are required. Durations are written like `30s`, `15m`, `1h30m`, `2d` or `PT30M`.",
        "The API server checks the bounds and rules below when an object is applied; the operator checks",
        "them again.",
    ]
    for crd in crds:
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        lines += [
            "",
            f"## {names['kind']}",
            "",
            schema.get("description", ""),
            "",
            f"- Scope: {crd['spec']['scope']}; plural `{names['plural']}`; short names "
            + ", ".join(f"`{short}`" for short in names["shortNames"])
            + "; categories "
            + ", ".join(f"`{category}`" for category in names["categories"]),
            "- Subresources: " + ", ".join(sorted(version["subresources"])),
            "- `kubectl get` columns: "
            + ", ".join(column["name"] for column in version["additionalPrinterColumns"]),
        ]
        lines += [f"- Rule: {rule['message']}." for rule in schema.get("x-kubernetes-validations", [])]
        for part in ("spec", "status"):
            if part not in schema["properties"]:
                continue
            lines += [
                "",
                f"### {names['kind']} {part}",
                "",
                "| Field | Type | Default | Bounds and rules | Description |",
                "|---|---|---|---|---|",
            ]
            lines += _rows(schema["properties"][part], part, part in schema.get("required", []))
    return "\n".join(lines) + "\n"


def generated_files() -> dict[str, str]:
    """Every generated file, by path relative to the project root, with its content."""
    crds = build_crds()
    files = {f"crds/{kind.file_name}": render_yaml([crd]) for kind, crd in zip(KINDS, crds, strict=True)}
    files[BUNDLE_PATH] = render_yaml(crds)
    files[DOCS_PATH] = render_api_reference(copy.deepcopy(crds))
    return files


def write_generated(crds_dir: Path, bundle: Path, docs: Path) -> list[Path]:
    """Write the CRDs into crds_dir, the bundle and the reference; return the paths written."""
    files = generated_files()
    targets = {
        crds_dir / Path(relative).name: content
        for relative, content in files.items()
        if relative.startswith("crds/")
    }
    targets[bundle] = files[BUNDLE_PATH]
    targets[docs] = files[DOCS_PATH]
    crds_dir.mkdir(parents=True, exist_ok=True)
    for stale in crds_dir.glob(f"*.{GROUP}.yaml"):
        if stale not in targets:
            stale.unlink()
    for path, content in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return list(targets)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaleset_operator.api.crdgen",
        description="Write the CRDs of the fleet.scaleset.dev kinds, the manifests' CRD bundle and docs/api.md.",
    )
    parser.add_argument("crds_dir", type=Path, help="directory for one CRD file per kind (crds)")
    parser.add_argument(
        "--bundle", type=Path, help=f"CRD bundle for kustomize (default <crds_dir>/../{BUNDLE_PATH})"
    )
    parser.add_argument("--docs", type=Path, help=f"API reference (default <crds_dir>/../{DOCS_PATH})")
    args = parser.parse_args(argv)
    root = args.crds_dir.resolve().parent
    for path in write_generated(
        args.crds_dir, args.bundle or root / BUNDLE_PATH, args.docs or root / DOCS_PATH
    ):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
