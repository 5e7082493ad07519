"""The generated CRDs: up to date, structural, defaulting like the models, rules that evaluate, manifests that render."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
from celpy.adapter import json_to_cel

from kubesim.errors import ApiError
from kubesim.schema import CustomResourceSchema, validate_crd
from scaleset_operator.api import crdgen
from scaleset_operator.api.loading import load_documents
from scaleset_operator.api.models import (
    RESOURCE_MODELS,
    AutomaticGuestPatching,
    ImageCatalog,
    MaintenanceConfiguration,
    RollingUpgrade,
    ScaleSet,
    ScaleSetSpec,
    UpgradePolicy,
)
from scaleset_operator.api.rules import (
    BATCH_WITHIN_UNHEALTHY_LIMIT,
    HOTPATCHING_NEEDS_GUEST_PATCHING,
    MAX_DEFERRAL_AT_MOST_35_DAYS,
    MAX_NAME_LENGTH,
    NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME,
    NAME_FITS_IN_HOSTNAMES,
    NAME_IS_A_DNS_LABEL,
    REPAIR_GRACE_PERIOD_BOUNDS,
    UPGRADE_DOMAIN_COUNT_LOCKED,
    WALK_WITHIN_UPGRADE_DOMAINS,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
TEMPLATE: dict[str, Any] = {"spec": {"containers": [{"name": "os", "image": "busybox:1.36"}]}}
MINIMAL: dict[type, dict[str, Any]] = {
    ScaleSet: {"spec": {"template": TEMPLATE}},
    UpgradePolicy: {},
    MaintenanceConfiguration: {
        "spec": {
            "maintenanceScope": "OSImage",
            "window": {"startDateTime": "2025-01-04 22:00", "duration": "3h", "recurEvery": "Day"},
        }
    },
    ImageCatalog: {},
}
SCALESET: dict[str, Any] = {
    "apiVersion": "fleet.scaleset.dev/v1alpha1",
    "kind": "ScaleSet",
    "metadata": {"name": "web"},
    "spec": {"replicas": 3, "upgradeDomainCount": 5, "template": TEMPLATE},
}


def schema_of(model: type) -> dict[str, Any]:
    schema: dict[str, Any] = crdgen.crd_for(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    yield path or "<root>", schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: absent fields get their default, top-down."""
    if schema.get("type") == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, child in properties.items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        for name, child in properties.items():
            if name in value:
                apply_defaults(child, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(schema["additionalProperties"], item)
    elif schema.get("type") == "array" and isinstance(value, list):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def without_empty(value: Any) -> Any:
    """Drop empty maps and lists: absent and empty mean the same in both the CRD and the models."""
    if isinstance(value, dict):
        cleaned = {key: without_empty(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if item not in ({}, [], None)}
    if isinstance(value, list):
        return [without_empty(item) for item in value]
    return value


def model_view(model: type, document: dict[str, Any]) -> Any:
    dumped = model.model_validate(document).model_dump(by_alias=True, mode="json", exclude_none=True)  # type: ignore[attr-defined]
    return without_empty(dumped)


def crd_view(model: type, document: dict[str, Any]) -> Any:
    defaulted = apply_defaults(schema_of(model), copy.deepcopy(document))
    defaulted.setdefault("apiVersion", "fleet.scaleset.dev/v1alpha1")
    defaulted.setdefault("kind", model.KIND)  # type: ignore[attr-defined]
    return without_empty(defaulted)


_CEL = celpy.Environment()


def evaluate(rule: str, self: Any, old_self: Any = None) -> bool:
    activation = {"self": json_to_cel(self)}
    if old_self is not None:
        activation["oldSelf"] = json_to_cel(old_self)
    return bool(_CEL.program(_CEL.compile(rule)).evaluate(activation))


def rule_failures(schema: dict[str, Any], value: Any, old: Any = None) -> list[str]:
    """Messages of the CEL rules `value` breaks, walking schema and value together as the API server does."""
    failures: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        is_transition = "oldSelf" in rule["rule"]
        if is_transition and old is None:
            continue
        if not evaluate(rule["rule"], value, old if is_transition else None):
            failures.append(rule["message"])
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                old_child = old.get(name) if isinstance(old, dict) else None
                failures += rule_failures(child, value[name], old_child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            failures += rule_failures(schema["items"], item)
    return failures


def without_extensions(schema: Any) -> Any:
    """The schema as plain JSON Schema for jsonschema: the x-kubernetes-* keys dropped."""
    if isinstance(schema, dict):
        return {key: without_extensions(value) for key, value in schema.items() if not key.startswith("x-")}
    if isinstance(schema, list):
        return [without_extensions(item) for item in schema]
    return schema


def example_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, document) for path in EXAMPLES for document in load_documents(path)]


MODEL_BY_KIND = {model.KIND: model for model in RESOURCE_MODELS}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- generated files


@functools.cache
def generated_files() -> dict[str, str]:
    return crdgen.generated_files()


@pytest.mark.parametrize("relative", sorted(generated_files()))
def test_generated_file_is_up_to_date_with_the_models(relative: str) -> None:
    expected = generated_files()[relative]
    path = ROOT / relative
    assert path.exists(), f"{relative} is missing: run `make crds`"
    assert path.read_text() == expected, f"{relative} is out of date with the models: run `make crds`"


def test_crds_directory_holds_exactly_one_file_per_kind() -> None:
    on_disk = sorted(path.name for path in (ROOT / "crds").glob("*.yaml"))
    assert on_disk == sorted(f"{kind.plural}.fleet.scaleset.dev.yaml" for kind in crdgen.KINDS)


def test_crdgen_command_writes_crds_bundle_and_reference(tmp_path: Path) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "stale.fleet.scaleset.dev.yaml").write_text("old")
    assert crdgen.main([str(tmp_path / "crds")]) == 0
    for relative, content in generated_files().items():
        assert (tmp_path / relative).read_text() == content
    assert not (tmp_path / "crds" / "stale.fleet.scaleset.dev.yaml").exists()


def test_crd_files_parse_as_one_custom_resource_definition_each() -> None:
    for kind in crdgen.KINDS:
        (crd,) = load_documents(ROOT / "crds" / kind.file_name)
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"]["name"] == f"{kind.plural}.fleet.scaleset.dev"


# --------------------------------------------------------------------------- names, scope, subresources


def test_names_scopes_and_short_names_follow_the_design() -> None:
    crds = {crd["spec"]["names"]["kind"]: crd["spec"] for crd in crdgen.build_crds()}
    assert {kind: spec["scope"] for kind, spec in crds.items()} == {
        "ScaleSet": "Namespaced",
        "UpgradePolicy": "Namespaced",
        "MaintenanceConfiguration": "Cluster",
        "ImageCatalog": "Cluster",
    }
    assert crds["ScaleSet"]["names"]["shortNames"] == ["sset", "vmss"]
    assert crds["UpgradePolicy"]["names"]["shortNames"] == ["upol"]
    assert crds["MaintenanceConfiguration"]["names"]["shortNames"] == ["mcfg"]
    assert crds["ImageCatalog"]["names"]["shortNames"] == ["icat"]
    for spec in crds.values():
        assert spec["group"] == "fleet.scaleset.dev"
        assert "fleet" in spec["names"]["categories"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"]["status"] == {}


def test_no_category_equals_a_resource_name_because_kubectl_expands_categories_first() -> None:
    crds = [crd["spec"]["names"] for crd in crdgen.build_crds()]
    resource_names = {
        name
        for names in crds
        for name in (names["plural"], names["singular"], names["kind"].lower(), *names["shortNames"])
    }
    categories = {category for names in crds for category in names["categories"]}
    assert categories == {"fleet", "all"}
    assert not categories & resource_names
    # `kubectl get all` lists workloads: the ScaleSet is one, its policies and catalogs are not.
    assert [names["kind"] for names in crds if "all" in names["categories"]] == ["ScaleSet"]


def test_scaleset_serves_the_scale_subresource_for_kubectl_scale_and_hpa() -> None:
    (version,) = crdgen.crd_for(ScaleSet)["spec"]["versions"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.labelSelector",
    }
    for other in (UpgradePolicy, MaintenanceConfiguration, ImageCatalog):
        assert "scale" not in crdgen.crd_for(other)["spec"]["versions"][0]["subresources"]


def test_scaleset_columns_show_desired_ready_updated_phase_and_domain() -> None:
    (version,) = crdgen.crd_for(ScaleSet)["spec"]["versions"]
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Desired": ".spec.replicas",
        "Ready": ".status.readyReplicas",
        "Updated": ".status.updatedReplicas",
        "Phase": ".status.upgrade.phase",
        "UD": ".status.upgrade.currentUpgradeDomain",
        "Slot": ".status.staged.production",
        "Age": ".metadata.creationTimestamp",
    }


def test_every_column_and_scale_path_names_a_field_of_the_schema() -> None:
    for crd in crdgen.build_crds():
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        known = {path for path, _ in nodes(schema)}
        paths = [column["jsonPath"] for column in version["additionalPrinterColumns"]]
        paths += list(version["subresources"].get("scale", {}).values())
        for path in paths:
            if path.startswith(".metadata."):
                continue  # the API server's own
            assert path in known, f"{crd['metadata']['name']}: {path} is not in the schema"


# --------------------------------------------------------------------------- structural schemas

FORBIDDEN = {"$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "title", "const", "nullable"}


@pytest.mark.parametrize("model", RESOURCE_MODELS, ids=lambda m: m.__name__)
def test_schema_is_structural(model: type) -> None:
    schema = schema_of(model)
    assert schema["type"] == "object"
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in nodes(schema):
        assert not FORBIDDEN & set(node), f"{path}: {FORBIDDEN & set(node)}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{path}: an array needs one items schema"
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], path


@pytest.mark.parametrize("model", RESOURCE_MODELS, ids=lambda m: m.__name__)
def test_every_default_is_valid_against_its_own_schema(model: type) -> None:
    for path, node in nodes(schema_of(model)):
        if "default" in node:
            assert jsonschema.Draft7Validator(without_extensions(node)).is_valid(node["default"]), path


def test_pod_template_and_claim_templates_keep_unknown_fields() -> None:
    spec = schema_of(ScaleSet)["properties"]["spec"]["properties"]
    assert spec["template"]["type"] == "object"
    assert spec["template"]["x-kubernetes-preserve-unknown-fields"] is True
    claim = spec["volumeClaimTemplates"]["items"]
    assert claim["type"] == "object"
    assert claim["x-kubernetes-preserve-unknown-fields"] is True
    # A claim is named after its template: the API server refuses a template without metadata.name.
    assert claim["required"] == ["metadata"]
    assert claim["properties"]["metadata"]["x-kubernetes-preserve-unknown-fields"] is True
    assert claim["properties"]["metadata"]["required"] == ["name"]


def test_descriptions_and_bounds_come_from_the_model_fields() -> None:
    spec = schema_of(ScaleSet)["properties"]["spec"]["properties"]
    domains = spec["upgradeDomainCount"]
    assert (domains["minimum"], domains["maximum"], domains["default"]) == (1, 20, 5)
    field = ScaleSetSpec.model_fields["upgrade_domain_count"]
    assert domains["description"] == field.description
    rolling = schema_of(UpgradePolicy)["properties"]["spec"]["properties"]["rollingUpgrade"]["properties"]
    assert (rolling["maxBatchInstancePercent"]["minimum"], rolling["maxBatchInstancePercent"]["maximum"]) == (
        5,
        100,
    )
    mode = schema_of(UpgradePolicy)["properties"]["spec"]["properties"]["mode"]
    assert mode["enum"] == ["Automatic", "Rolling", "Manual", "Staged"]


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("model", RESOURCE_MODELS, ids=lambda m: m.__name__)
def test_crd_defaults_equal_model_defaults_for_a_minimal_object(model: type) -> None:
    document = {"metadata": {"name": "x"}, **MINIMAL[model]}
    assert crd_view(model, document) == model_view(model, document)


def test_crd_defaults_fill_nested_objects_and_list_items_like_the_models() -> None:
    policy = {
        "spec": {"rollingUpgrade": {"maxSurge": True}, "healthCheck": {"onInstanceStartTimeout": "Pause"}}
    }
    assert crd_view(UpgradePolicy, policy) == model_view(UpgradePolicy, policy)
    template = {"spec": {"containers": [{"name": "os", "image": "a"}, {"name": "agent", "image": "b"}]}}
    scaleset = {"spec": {"template": template, "extensions": [{"name": "agent", "container": "agent"}]}}
    assert crd_view(ScaleSet, scaleset) == model_view(ScaleSet, scaleset)
    status = {"spec": {"template": TEMPLATE}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert crd_view(ScaleSet, status) == model_view(ScaleSet, status)


@pytest.mark.parametrize("path,document", example_documents(), ids=lambda v: getattr(v, "name", ""))
def test_examples_default_the_same_way_in_the_crd_and_the_models(
    path: Path, document: dict[str, Any]
) -> None:
    model = MODEL_BY_KIND[document["kind"]]
    assert crd_view(model, document) == model_view(model, document)


# --------------------------------------------------------------------------- rules


def test_every_rule_compiles_in_cel() -> None:
    for model in RESOURCE_MODELS:
        for path, node in nodes(schema_of(model)):
            for rule in node.get("x-kubernetes-validations", []):
                assert _CEL.compile(rule["rule"]) is not None, path


def test_rules_sit_where_they_can_see_their_fields() -> None:
    root = schema_of(ScaleSet)
    assert UPGRADE_DOMAIN_COUNT_LOCKED.schema() in root["x-kubernetes-validations"]
    assert WALK_WITHIN_UPGRADE_DOMAINS.schema() in root["properties"]["spec"]["x-kubernetes-validations"]
    rolling = schema_of(UpgradePolicy)["properties"]["spec"]["properties"]["rollingUpgrade"]
    assert rolling["x-kubernetes-validations"] == [BATCH_WITHIN_UNHEALTHY_LIMIT.schema()]
    deferral = schema_of(MaintenanceConfiguration)["properties"]["spec"]["properties"]["maxDeferral"]
    assert deferral["x-kubernetes-validations"] == [MAX_DEFERRAL_AT_MOST_35_DAYS.schema()]


def test_schema_defaults_pass_their_own_rules() -> None:
    # A real API server judges a default by the rules of its schema before nested defaults apply.
    rolling = schema_of(UpgradePolicy)["properties"]["spec"]["properties"]["rollingUpgrade"]
    assert evaluate(BATCH_WITHIN_UNHEALTHY_LIMIT.rule, rolling["default"]) is True


@pytest.mark.parametrize(
    "batch,unhealthy,allowed",
    [(20, 20, True), (10, 50, True), (30, 20, False), (100, 99, False)],
)
def test_batch_may_not_exceed_unhealthy_limit_in_cel_and_python(
    batch: int, unhealthy: int, allowed: bool
) -> None:
    rolling = {"maxBatchInstancePercent": batch, "maxUnhealthyInstancePercent": unhealthy}
    assert evaluate(BATCH_WITHIN_UNHEALTHY_LIMIT.rule, rolling) is allowed
    if allowed:
        RollingUpgrade.model_validate(rolling)
    else:
        with pytest.raises(ValueError, match=re.escape(BATCH_WITHIN_UNHEALTHY_LIMIT.message)):
            RollingUpgrade.model_validate(rolling)


@pytest.mark.parametrize(
    "walk,count,allowed", [(None, 5, True), (0, 1, True), (4, 5, True), (5, 5, False), (3, 2, False)]
)
def test_walked_domain_must_exist_in_cel_and_python(walk: int | None, count: int, allowed: bool) -> None:
    spec: dict[str, Any] = {"upgradeDomainCount": count, "template": TEMPLATE}
    if walk is not None:
        spec["walkUpgradeDomain"] = walk
    assert evaluate(WALK_WITHIN_UPGRADE_DOMAINS.rule, spec) is allowed
    if allowed:
        ScaleSetSpec.model_validate(spec)
    else:
        with pytest.raises(ValueError, match=re.escape(WALK_WITHIN_UPGRADE_DOMAINS.message)):
            ScaleSetSpec.model_validate(spec)


@pytest.mark.parametrize(
    "patching,allowed",
    [
        ({}, True),
        ({"enabled": True}, True),
        ({"enabled": True, "enableHotpatching": True}, True),
        ({"enableHotpatching": False}, True),
        ({"enableHotpatching": True}, False),
        ({"enabled": False, "enableHotpatching": True}, False),
    ],
)
def test_hotpatching_needs_guest_patching_in_cel_and_python(patching: dict[str, Any], allowed: bool) -> None:
    # The VM API: "For enableHotpatching, ... 'patchMode' must be set to 'AutomaticByPlatform'".
    assert evaluate(HOTPATCHING_NEEDS_GUEST_PATCHING.rule, patching) is allowed
    if allowed:
        AutomaticGuestPatching.model_validate(patching)
    else:
        with pytest.raises(ValueError, match=re.escape(HOTPATCHING_NEEDS_GUEST_PATCHING.message)):
            AutomaticGuestPatching.model_validate(patching)


@pytest.mark.parametrize(
    "old_status,new_count,allowed",
    [
        (None, 7, True),
        ({}, 7, True),
        ({"upgrade": {}}, 7, True),
        ({"upgrade": {"locked": False}}, 7, True),
        ({"upgrade": {"locked": True}}, 5, True),
        ({"upgrade": {"locked": True}}, 7, False),
    ],
)
def test_domain_count_is_locked_only_while_an_upgrade_runs(
    old_status: dict[str, Any] | None, new_count: int, allowed: bool
) -> None:
    old = copy.deepcopy(SCALESET)
    if old_status is not None:
        old["status"] = old_status
    new = copy.deepcopy(old)
    new["spec"]["upgradeDomainCount"] = new_count
    assert evaluate(UPGRADE_DOMAIN_COUNT_LOCKED.rule, new, old) is allowed
    failures = rule_failures(schema_of(ScaleSet), new, old)
    assert failures == ([] if allowed else [UPGRADE_DOMAIN_COUNT_LOCKED.message])


@pytest.mark.parametrize(
    "deferral,allowed",
    [
        ("35d", True),
        ("7d", True),
        ("036d", False),
        ("36d", False),
        ("100d", False),
        ("840h", True),
        ("841h", False),
        ("P35D", True),
        ("P36D", False),
        ("1h30m", True),
        ("PT12H", True),
    ],
)
def test_max_deferral_of_35_days_is_checked_by_cel_for_one_unit_forms(deferral: str, allowed: bool) -> None:
    assert evaluate(MAX_DEFERRAL_AT_MOST_35_DAYS.rule, deferral) is allowed
    spec = {**MINIMAL[MaintenanceConfiguration]["spec"], "maxDeferral": deferral}
    if allowed:
        MaintenanceConfiguration.model_validate({"spec": spec})
    else:
        with pytest.raises(ValueError, match=re.escape(MAX_DEFERRAL_AT_MOST_35_DAYS.message)):
            MaintenanceConfiguration.model_validate({"spec": spec})


def test_mixed_unit_deferral_over_35_days_is_left_to_the_operator() -> None:
    assert evaluate(MAX_DEFERRAL_AT_MOST_35_DAYS.rule, "34d25h") is True
    spec = {**MINIMAL[MaintenanceConfiguration]["spec"], "maxDeferral": "34d25h"}
    with pytest.raises(ValueError, match=re.escape(MAX_DEFERRAL_AT_MOST_35_DAYS.message)):
        MaintenanceConfiguration.model_validate({"spec": spec})


# --------------------------------------------------------------------------- examples against the CRDs


@pytest.mark.parametrize("path,document", example_documents(), ids=lambda v: getattr(v, "name", ""))
def test_example_is_valid_against_its_crd_schema_and_rules(path: Path, document: dict[str, Any]) -> None:
    schema = schema_of(MODEL_BY_KIND[document["kind"]])
    jsonschema.validate(document, without_extensions(schema))
    defaulted = apply_defaults(schema, copy.deepcopy(document))
    assert rule_failures(schema, defaulted, old=defaulted) == []


@pytest.mark.parametrize(
    "change,message",
    [
        ({"upgradeDomainCount": 25}, "25 is greater than the maximum of 20"),
        ({"replicas": -1}, "-1 is less than the minimum of 0"),
        ({"template": {"spec": {"containers": []}}}, "should be non-empty"),
        ({"template": {"spec": {"containers": [{"name": "os"}]}}}, "'image' is a required property"),
        ({"upgradePolicyRef": {}}, "'name' is a required property"),
    ],
)
def test_crd_schema_refuses_bad_scaleset_fields(change: dict[str, Any], message: str) -> None:
    document = copy.deepcopy(SCALESET)
    document["spec"].update(change)
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(document, without_extensions(schema_of(ScaleSet)))


def test_crd_schema_refuses_unknown_enum_values() -> None:
    policy = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "UpgradePolicy", "spec": {"mode": "Fast"}}
    with pytest.raises(jsonschema.ValidationError, match="'Fast' is not one of"):
        jsonschema.validate(policy, without_extensions(schema_of(UpgradePolicy)))


@pytest.mark.parametrize(
    "name,broken",
    [
        ("web", None),
        ("a" * MAX_NAME_LENGTH, None),
        ("a" * (MAX_NAME_LENGTH + 1), NAME_FITS_IN_HOSTNAMES),
        ("web.prod", NAME_IS_A_DNS_LABEL),
        ("web-", NAME_IS_A_DNS_LABEL),
        ("web-green", NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME),
        ("web-surge", NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME),
        ("green", NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME),
        ("evergreen", None),
        ("green-web", None),
    ],
)
def test_a_scaleset_name_that_cannot_name_its_instances_is_refused_in_cel_and_python(
    name: str, broken: Any
) -> None:
    document = {**copy.deepcopy(SCALESET), "metadata": {"name": name}}
    failures = rule_failures(schema_of(ScaleSet), document)
    assert failures == ([] if broken is None else [broken.message])
    if broken is None:
        ScaleSet.model_validate(document)
    else:
        with pytest.raises(ValueError, match=re.escape(broken.message)):
            ScaleSet.model_validate(document)


# --------------------------------------------------------------------------- the embedded API server's admission


@pytest.fixture
def admission() -> Any:
    """Admit (new, old) through kubesim's CRD validation of a kind: returns the stored object or raises 422."""

    def admit(model: type, new: dict[str, Any], old: dict[str, Any] | None = None) -> Any:
        crd = crdgen.crd_for(model)
        return CustomResourceSchema(crd, "v1alpha1").admit(copy.deepcopy(new), old)

    return admit


def refusal(admit: Any, model: type, new: dict[str, Any], old: dict[str, Any] | None = None) -> str:
    with pytest.raises(ApiError) as refused:
        admit(model, new, old)
    assert refused.value.code == 422
    return str(refused.value)


@pytest.mark.parametrize("path,document", example_documents(), ids=lambda v: getattr(v, "name", ""))
def test_api_server_admits_the_examples(admission: Any, path: Path, document: dict[str, Any]) -> None:
    admission(MODEL_BY_KIND[document["kind"]], document)


def test_api_server_refuses_out_of_bounds_domain_count(admission: Any) -> None:
    document = copy.deepcopy(SCALESET)
    document["spec"]["upgradeDomainCount"] = 25
    assert "spec.upgradeDomainCount" in refusal(admission, ScaleSet, document)


def test_api_server_refuses_unknown_mode(admission: Any) -> None:
    policy = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "UpgradePolicy", "metadata": {"name": "p"}}
    policy["spec"] = {"mode": "Fast"}
    assert "spec.mode" in refusal(admission, UpgradePolicy, policy)


def test_api_server_refuses_batch_larger_than_unhealthy_limit(admission: Any) -> None:
    policy: dict[str, Any] = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "UpgradePolicy"}
    policy["metadata"] = {"name": "p"}
    policy["spec"] = {"rollingUpgrade": {"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 20}}
    assert BATCH_WITHIN_UNHEALTHY_LIMIT.message in refusal(admission, UpgradePolicy, policy)


def test_api_server_refuses_walking_a_domain_that_does_not_exist(admission: Any) -> None:
    document = copy.deepcopy(SCALESET)
    document["spec"]["walkUpgradeDomain"] = 5
    assert WALK_WITHIN_UPGRADE_DOMAINS.message in refusal(admission, ScaleSet, document)


def test_api_server_refuses_long_deferral(admission: Any) -> None:
    config: dict[str, Any] = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "MaintenanceConfiguration"}
    config["metadata"] = {"name": "m"}
    config["spec"] = {**MINIMAL[MaintenanceConfiguration]["spec"], "maxDeferral": "60d"}
    assert MAX_DEFERRAL_AT_MOST_35_DAYS.message in refusal(admission, MaintenanceConfiguration, config)


def test_api_server_refuses_a_scaleset_named_like_the_green_slot_of_another(admission: Any) -> None:
    document = {**copy.deepcopy(SCALESET), "metadata": {"name": "web-green"}}
    assert NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME.message in refusal(admission, ScaleSet, document)


def test_api_server_refuses_domain_count_change_while_locked_only(admission: Any) -> None:
    locked = copy.deepcopy(SCALESET)
    locked["status"] = {"upgrade": {"locked": True, "phase": "RollingForward"}}
    changed = copy.deepcopy(locked)
    changed["spec"]["upgradeDomainCount"] = 3
    assert UPGRADE_DOMAIN_COUNT_LOCKED.message in refusal(admission, ScaleSet, changed, locked)
    idle = copy.deepcopy(SCALESET)
    idle["status"] = {"upgrade": {"locked": False, "phase": "Idle"}}
    admission(ScaleSet, {**copy.deepcopy(idle), "spec": changed["spec"]}, idle)


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_api_server_accepts_the_crd_itself(kind: crdgen.CrdKind) -> None:
    validate_crd(crdgen.build_crd(kind))


def test_api_server_fills_in_the_model_defaults(admission: Any) -> None:
    stored = admission(ScaleSet, SCALESET)
    assert without_empty(stored) == model_view(ScaleSet, SCALESET)


@pytest.mark.parametrize(
    "grace,by_cel,by_operator",
    [
        # The scale set API: "The minimum allowed grace period is 10 minutes (PT10M) ... The maximum
        # allowed grace period is 90 minutes (PT90M)."
        ("10m", True, True),
        ("9m", False, False),
        ("90m", True, True),
        ("91m", False, False),
        ("1h30m", True, True),
        ("1h31m", False, False),
        ("600s", True, True),
        ("599s", False, False),
        ("PT30M", True, True),  # ISO forms are left to the operator by the API server...
        ("PT5M", True, False),  # ...which refuses them in Python
        ("2d", True, False),
    ],
)
def test_the_repair_grace_period_is_bounded_as_the_scale_set_api_bounds_it(
    grace: str, by_cel: bool, by_operator: bool
) -> None:
    assert evaluate(REPAIR_GRACE_PERIOD_BOUNDS.rule, grace) is by_cel
    field = schema_of(ScaleSet)["properties"]["spec"]["properties"]["automaticRepairs"]["properties"][
        "gracePeriod"
    ]
    assert field["x-kubernetes-validations"] == [REPAIR_GRACE_PERIOD_BOUNDS.schema()]
    spec = {**MINIMAL[ScaleSet]["spec"], "automaticRepairs": {"enabled": True, "gracePeriod": grace}}
    if by_operator:
        ScaleSet.model_validate({"spec": spec})
    else:
        with pytest.raises(ValueError, match=re.escape(REPAIR_GRACE_PERIOD_BOUNDS.message)):
            ScaleSet.model_validate({"spec": spec})


def test_automatic_repairs_and_the_disruption_budget_are_off_by_default() -> None:
    spec = ScaleSetSpec.model_validate(MINIMAL[ScaleSet]["spec"])
    assert not spec.automatic_repairs.enabled and not spec.disruption_budget.enabled
    assert (spec.automatic_repairs.grace_period, spec.automatic_repairs.repair_action) == ("30m", "Replace")
