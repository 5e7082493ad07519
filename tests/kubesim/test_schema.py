"""Admission of custom resources by their CRD schema: pruning, defaults, validation messages and CEL rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kubesim.cel import CelError, compile_rule, escape_property_name, to_cel
from kubesim.errors import ApiError
from kubesim.schema import CustomResourceSchema, validate_crd

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["template"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 0, "default": 1},
        "upgradeDomainCount": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        "walkUpgradeDomain": {"type": "integer"},
        "mode": {"type": "string", "enum": ["Automatic", "Rolling", "Manual"]},
        "name": {"type": "string", "maxLength": 5, "minLength": 2, "pattern": "^[a-z]+$"},
        "ratio": {"type": "number"},
        "maxSurge": {"x-kubernetes-int-or-string": True},
        "startedAt": {"type": "string", "format": "date-time"},
        "note": {"type": "string", "nullable": True},
        "tags": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 3,
            "x-kubernetes-list-type": "set",
        },
        "extensions": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "enableAutomaticUpgrade": {"type": "boolean", "default": False},
                    "version": {
                        "type": "string",
                        "x-kubernetes-validations": [
                            {"rule": "self != 'v0'", "message": "version v0 is withdrawn"},
                            {"rule": "self >= oldSelf", "message": "an extension is never downgraded"},
                        ],
                    },
                },
            },
        },
        "window": {
            "type": "object",
            "default": {},
            "properties": {
                "duration": {"type": "string", "default": "2h"},
                "timeZone": {"type": "string", "default": "UTC"},
            },
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "embedded": {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "x-kubernetes-preserve-unknown-fields": True,
        },
    },
    "x-kubernetes-validations": [
        {
            "rule": "!has(self.walkUpgradeDomain) || self.walkUpgradeDomain < self.upgradeDomainCount",
            "message": "spec.walkUpgradeDomain must be less than spec.upgradeDomainCount",
            "fieldPath": ".walkUpgradeDomain",
        }
    ],
}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scalesets.fleet.scaleset.dev"},
    "spec": {
        "group": "fleet.scaleset.dev",
        "scope": "Namespaced",
        "names": {
            "plural": "scalesets",
            "singular": "scaleset",
            "kind": "ScaleSet",
            "listKind": "ScaleSetList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": SPEC_SCHEMA,
                            "status": {
                                "type": "object",
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "phase": {"type": "string", "default": "Idle"},
                                    "locked": {"type": "boolean"},
                                },
                            },
                        },
                        "x-kubernetes-validations": [
                            {
                                "rule": "self.spec.upgradeDomainCount == oldSelf.spec.upgradeDomainCount"
                                " || !has(oldSelf.status) || !has(oldSelf.status.locked) || !oldSelf.status.locked",
                                "message": "spec.upgradeDomainCount cannot change while an upgrade is in progress",
                                "fieldPath": ".spec.upgradeDomainCount",
                                "reason": "FieldValueForbidden",
                            }
                        ],
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def schema() -> CustomResourceSchema:
    return CustomResourceSchema(copy.deepcopy(CRD), "v1alpha1")


def scaleset(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "metadata": {"name": "web", "namespace": "default", "labels": {"a": "b"}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}, **spec},
    }


def rejection(
    schema: CustomResourceSchema, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> ApiError:
    with pytest.raises(ApiError) as caught:
        schema.admit(obj, old)
    assert caught.value.code == 422
    assert caught.value.reason == "Invalid"
    return caught.value


def messages(error: ApiError) -> list[str]:
    return [f"{c.field}: {c.message}" for c in error.causes]


# --- pruning and defaults -----------------------------------------------------------------------------


def test_unknown_fields_are_pruned_but_metadata_and_type_fields_are_kept(
    schema: CustomResourceSchema,
) -> None:
    obj = scaleset(bogus=1)
    obj["extra"] = True
    admitted = schema.admit(obj, None)
    assert "bogus" not in admitted["spec"] and "extra" not in admitted
    assert admitted["metadata"]["labels"] == {"a": "b"}
    assert admitted["apiVersion"] == "fleet.scaleset.dev/v1alpha1"


def test_preserve_unknown_fields_keeps_everything_below(schema: CustomResourceSchema) -> None:
    admitted = schema.admit(scaleset(), None)
    assert admitted["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"


def test_unknown_fields_are_reported_with_their_paths(schema: CustomResourceSchema) -> None:
    obj = scaleset(bogus=1, window={"duration": "1h", "typo": 2})
    assert schema.unknown_fields(obj) == ["spec.bogus", "spec.window.typo"]


def test_defaults_fill_missing_fields_recursively(schema: CustomResourceSchema) -> None:
    admitted = schema.admit(scaleset(), None)
    assert admitted["spec"]["replicas"] == 1
    assert admitted["spec"]["upgradeDomainCount"] == 5
    assert admitted["spec"]["window"] == {"duration": "2h", "timeZone": "UTC"}


def test_defaults_apply_inside_list_items(schema: CustomResourceSchema) -> None:
    admitted = schema.admit(scaleset(extensions=[{"name": "monitor"}]), None)
    assert admitted["spec"]["extensions"] == [{"name": "monitor", "enableAutomaticUpgrade": False}]


def test_null_in_a_non_nullable_field_gets_the_default(schema: CustomResourceSchema) -> None:
    admitted = schema.admit(scaleset(replicas=None, walkUpgradeDomain=None), None)
    assert admitted["spec"]["replicas"] == 1
    assert "walkUpgradeDomain" not in admitted["spec"]


def test_null_in_a_nullable_field_is_kept(schema: CustomResourceSchema) -> None:
    assert schema.admit(scaleset(note=None), None)["spec"]["note"] is None


def test_status_is_dropped_on_create_when_it_has_a_subresource(schema: CustomResourceSchema) -> None:
    obj = scaleset()
    obj["status"] = {"replicas": 3}
    assert "status" not in schema.admit(obj, None)


def test_status_is_kept_from_the_old_object_on_main_resource_update(schema: CustomResourceSchema) -> None:
    old = schema.admit(scaleset(), None)
    old["status"] = {"replicas": 3, "phase": "Idle"}
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 99}
    assert schema.admit(new, old)["status"] == {"replicas": 3, "phase": "Idle"}


def test_status_write_takes_only_the_status(schema: CustomResourceSchema) -> None:
    old = schema.admit(scaleset(), None)
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 7
    new["status"] = {"replicas": 2, "bogus": 1}
    stored = schema.admit_status(new, old)
    assert stored["spec"]["replicas"] == 1
    assert stored["status"] == {"replicas": 2, "phase": "Idle"}


def test_status_write_is_validated(schema: CustomResourceSchema) -> None:
    old = schema.admit(scaleset(), None)
    new = copy.deepcopy(old)
    new["status"] = {"replicas": -1}
    with pytest.raises(ApiError) as caught:
        schema.admit_status(new, old)
    assert caught.value.causes[0].field == "status.replicas"


# --- validation messages ------------------------------------------------------------------------------


def test_maximum_is_reported_like_the_api_server(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(upgradeDomainCount=25))
    assert error.message == (
        'ScaleSet.fleet.scaleset.dev "web" is invalid: spec.upgradeDomainCount: Invalid value: 25: '
        "spec.upgradeDomainCount in body should be less than or equal to 20"
    )
    assert error.causes[0].field == "spec.upgradeDomainCount"
    assert error.group == "fleet.scaleset.dev" and error.kind == "ScaleSet" and error.name == "web"


def test_minimum_is_reported(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(upgradeDomainCount=0))
    assert "should be greater than or equal to 1" in error.causes[0].message


def test_enum_lists_the_supported_values(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(mode="Foo"))
    assert messages(error)[0] == (
        'spec.mode: Unsupported value: "Foo": supported values: "Automatic", "Rolling", "Manual"'
    )
    assert error.causes[0].reason == "FieldValueNotSupported"


def test_required_field_is_reported(schema: CustomResourceSchema) -> None:
    obj = scaleset()
    del obj["spec"]["template"]
    error = rejection(schema, obj)
    assert "spec.template: Required value" in messages(error)


def test_wrong_type_is_reported(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(replicas="three"))
    assert messages(error)[0] == (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    )


def test_integral_float_counts_as_integer(schema: CustomResourceSchema) -> None:
    assert schema.admit(scaleset(replicas=3.0), None)["spec"]["replicas"] == 3.0


def test_integer_is_a_number(schema: CustomResourceSchema) -> None:
    assert schema.admit(scaleset(ratio=2), None)["spec"]["ratio"] == 2


def test_string_limits_are_reported(schema: CustomResourceSchema) -> None:
    too_long = rejection(schema, scaleset(name="abcdefg"))
    assert messages(too_long)[0] == "spec.name: Too long: may not be more than 5 bytes"
    too_short = rejection(schema, scaleset(name="a"))
    assert "spec.name in body should be at least 2 chars long" in messages(too_short)[0]
    mismatch = rejection(schema, scaleset(name="AB"))
    assert "spec.name in body should match '^[a-z]+$'" in messages(mismatch)[0]


def test_int_or_string_accepts_both_and_nothing_else(schema: CustomResourceSchema) -> None:
    schema.admit(scaleset(maxSurge=1), None)
    schema.admit(scaleset(maxSurge="20%"), None)
    error = rejection(schema, scaleset(maxSurge=True))
    assert "must be of type integer,string" in error.causes[0].message


def test_date_time_format_is_checked(schema: CustomResourceSchema) -> None:
    schema.admit(scaleset(startedAt="2024-05-01T10:00:00Z"), None)
    error = rejection(schema, scaleset(startedAt="yesterday"))
    assert 'must be of type date-time: "yesterday"' in error.causes[0].message


def test_max_items_and_set_duplicates_are_reported(schema: CustomResourceSchema) -> None:
    too_many = rejection(schema, scaleset(tags=["a", "b", "c", "d"]))
    assert messages(too_many)[0] == "spec.tags: Too many: 4: must have at most 3 items"
    duplicate = rejection(schema, scaleset(tags=["a", "a"]))
    assert messages(duplicate)[0] == 'spec.tags[1]: Duplicate value: "a"'


def test_map_list_items_must_have_unique_keys(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(extensions=[{"name": "x"}, {"name": "x"}]))
    assert error.causes[0].field == "spec.extensions[1]"
    assert error.causes[0].reason == "FieldValueDuplicate"


def test_additional_properties_values_are_validated(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(labels={"tier": 3}))
    assert error.causes[0].field == "spec.labels.tier"


def test_embedded_resource_needs_api_version_and_kind(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(embedded={"metadata": {"name": "x"}}))
    fields = {c.field for c in error.causes}
    assert {"spec.embedded.apiVersion", "spec.embedded.kind"} <= fields


def test_several_errors_are_listed_together(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(upgradeDomainCount=30, mode="Foo"))
    assert error.message.startswith('ScaleSet.fleet.scaleset.dev "web" is invalid: [')


def test_one_of_requires_exactly_one_match() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["oneOf"] = [{"required": ["replicas"]}, {"required": ["mode"]}]
    schema = CustomResourceSchema(crd, "v1alpha1")
    error = rejection(schema, scaleset(replicas=1, mode="Manual"))
    assert "must validate one and only one schema (oneOf)" in error.causes[0].message


# --- CEL rules ----------------------------------------------------------------------------------------


def test_cel_rule_compares_integers_and_reports_its_message_at_field_path(
    schema: CustomResourceSchema,
) -> None:
    error = rejection(schema, scaleset(upgradeDomainCount=3, walkUpgradeDomain=3))
    assert messages(error) == [
        'spec.walkUpgradeDomain: Invalid value: "object": spec.walkUpgradeDomain must be less than spec.upgradeDomainCount'
    ]
    schema.admit(scaleset(upgradeDomainCount=3, walkUpgradeDomain=2), None)


def test_cel_rule_runs_on_list_items(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(extensions=[{"name": "x", "version": "v0"}]))
    assert messages(error) == ['spec.extensions[0].version: Invalid value: "string": version v0 is withdrawn']


def test_transition_rule_is_skipped_on_create(schema: CustomResourceSchema) -> None:
    schema.admit(scaleset(extensions=[{"name": "x", "version": "v1"}]), None)


def test_transition_rule_compares_with_the_same_map_list_item(schema: CustomResourceSchema) -> None:
    old = schema.admit(
        scaleset(extensions=[{"name": "x", "version": "v2"}, {"name": "y", "version": "v1"}]), None
    )
    downgraded = copy.deepcopy(old)
    downgraded["spec"]["extensions"] = [{"name": "y", "version": "v1"}, {"name": "x", "version": "v1"}]
    error = rejection(schema, downgraded, old)
    assert messages(error) == [
        'spec.extensions[1].version: Invalid value: "string": an extension is never downgraded'
    ]


def test_transition_rule_with_reason_forbidden_on_update(schema: CustomResourceSchema) -> None:
    old = schema.admit(scaleset(), None)
    old["status"] = {"locked": True}
    changed = copy.deepcopy(old)
    changed["spec"]["upgradeDomainCount"] = 3
    error = rejection(schema, changed, old)
    assert messages(error) == [
        "spec.upgradeDomainCount: Forbidden: spec.upgradeDomainCount cannot change while an upgrade is in progress"
    ]
    old["status"] = {"locked": False}
    schema.admit(changed, old)


def test_cel_rules_wait_until_schema_errors_are_fixed(schema: CustomResourceSchema) -> None:
    error = rejection(schema, scaleset(mode="Foo", upgradeDomainCount=3, walkUpgradeDomain=3))
    assert "some validation rules were not checked" in error.causes[-1].message
    assert not any("walkUpgradeDomain must be less" in c.message for c in error.causes)


def test_unchanged_invalid_values_are_ratcheted_on_update(schema: CustomResourceSchema) -> None:
    old = scaleset(mode="Legacy", upgradeDomainCount=5)
    changed = copy.deepcopy(old)
    changed["spec"]["replicas"] = 4
    assert schema.admit(changed, old)["spec"]["mode"] == "Legacy"


def test_message_expression_builds_the_message() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {
            "rule": "self.replicas <= 10",
            "messageExpression": "'replicas ' + string(self.replicas) + ' exceeds 10'",
        }
    ]
    error = rejection(CustomResourceSchema(crd, "v1alpha1"), scaleset(replicas=11))
    assert messages(error) == ['spec: Invalid value: "object": replicas 11 exceeds 10']


def test_rule_without_message_reports_the_rule(schema: CustomResourceSchema) -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.replicas < 3"}]
    error = rejection(CustomResourceSchema(crd, "v1alpha1"), scaleset(replicas=5))
    assert messages(error) == ['spec: Invalid value: "object": failed rule: self.replicas < 3']


def test_rule_reading_a_missing_field_reports_no_such_key() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.mode == 'Manual'"}]
    error = rejection(CustomResourceSchema(crd, "v1alpha1"), scaleset())
    assert "no such key: mode evaluating rule: self.mode == 'Manual'" in error.causes[0].message


def test_root_rule_sees_only_name_and_generate_name_of_metadata() -> None:
    crd = copy.deepcopy(CRD)
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root["x-kubernetes-validations"] = [{"rule": "!has(self.metadata.labels) && self.metadata.name == 'web'"}]
    CustomResourceSchema(crd, "v1alpha1").admit(scaleset(), None)


def test_number_fields_are_doubles_in_cel() -> None:
    value = to_cel({"ratio": 2}, {"type": "object", "properties": {"ratio": {"type": "number"}}})
    assert compile_rule("self.ratio == 2.0").evaluate({"self": value})


def test_kubernetes_string_and_list_functions_are_available() -> None:
    assert compile_rule("'ABC'.lowerAscii() == 'abc'").evaluate({})
    assert compile_rule("['a','b'].join('-') == 'a-b'").evaluate({})
    assert compile_rule("[1, 2, 3].isSorted()").evaluate({})
    assert compile_rule("'a,b'.split(',').size() == 2").evaluate({})


def test_property_names_are_escaped_for_cel() -> None:
    assert escape_property_name("max-surge") == "max__dash__surge"
    assert escape_property_name("namespace") == "__namespace__"
    assert escape_property_name("a.b") == "a__dot__b"
    assert escape_property_name("1abc") is None


def test_compiled_rules_are_cached() -> None:
    assert compile_rule("self > 1") is compile_rule("self > 1")


@given(st.integers(min_value=-1000, max_value=1000), st.integers(min_value=-1000, max_value=1000))
def test_integer_comparison_in_cel_agrees_with_python(a: int, b: int) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    assert bool(compile_rule("self.a <= self.b").evaluate({"self": to_cel({"a": a, "b": b}, schema)})) == (
        a <= b
    )


def test_syntax_error_in_a_rule_is_a_cel_error() -> None:
    with pytest.raises(CelError):
        compile_rule("self.a <= ")


# --- CRD structural checks ----------------------------------------------------------------------------


def crd_error(crd: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate_crd(crd)
    assert caught.value.code == 422
    assert caught.value.kind == "CustomResourceDefinition"
    return caught.value


def test_a_well_formed_crd_passes() -> None:
    validate_crd(copy.deepcopy(CRD))


def test_crd_needs_group_names_and_scope() -> None:
    crd = copy.deepcopy(CRD)
    crd["spec"]["group"] = ""
    crd["spec"]["names"]["kind"] = ""
    crd["spec"]["scope"] = "Galaxy"
    fields = {c.field for c in crd_error(crd).causes}
    assert {"spec.group", "spec.names.kind", "spec.scope"} <= fields


def test_crd_needs_exactly_one_storage_version() -> None:
    crd = copy.deepcopy(CRD)
    second = copy.deepcopy(crd["spec"]["versions"][0])
    second["name"] = "v1beta1"
    crd["spec"]["versions"].append(second)
    assert "exactly one version marked as storage version" in crd_error(crd).message


def test_crd_schema_nodes_need_a_type() -> None:
    crd = copy.deepcopy(CRD)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "replicas"
    ] = {"minimum": 0}
    error = crd_error(crd)
    assert error.causes[0].field == (
        "spec.validation.openAPIV3Schema.properties[spec].properties[replicas].type"
    )
    assert error.causes[0].message == "Required value: must not be empty for specified object fields"


def test_crd_root_must_be_an_object() -> None:
    crd = copy.deepcopy(CRD)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["type"] = "string"
    assert "must be object at the root" in crd_error(crd).message


def test_crd_with_a_rule_that_does_not_compile_is_refused() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.replicas <"}]
    error = crd_error(crd)
    assert error.causes[0].field.endswith("properties[spec].x-kubernetes-validations[0].rule")
    assert "compilation failed" in error.causes[0].message


def test_crd_rule_field_path_must_name_a_field_of_its_schema() -> None:
    crd = copy.deepcopy(CRD)
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root["properties"]["metadata"] = {"type": "object"}
    rule = {"rule": "self.spec.upgradeDomainCount > 0", "fieldPath": ".metadata.name"}
    root["x-kubernetes-validations"] = [rule]
    error = crd_error(crd)
    assert [(c.field, c.message) for c in error.causes] == [
        (
            "spec.validation.openAPIV3Schema.x-kubernetes-validations[0].fieldPath",
            'Invalid value: ".metadata.name": must be a valid path',
        )
    ]
    for bad in (".spec.nothing", "spec", ".spec[0]", "['spec'", " "):
        rule["fieldPath"] = bad
        assert "must be a valid path" in crd_error(crd).message, bad
    for good in (".spec.upgradeDomainCount", "['spec'].upgradeDomainCount", ".metadata"):
        rule["fieldPath"] = good
        validate_crd(crd)


def test_crd_default_must_fit_its_schema() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["upgradeDomainCount"]["default"] = 50
    error = crd_error(crd)
    assert error.causes[0].field.endswith("properties[upgradeDomainCount].default")


def test_crd_default_must_pass_its_rules_before_nested_defaults_apply() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rolling: dict[str, Any] = {
        "type": "object",
        "default": {},
        "properties": {
            "batch": {"type": "integer", "default": 20},
            "unhealthy": {"type": "integer", "default": 20},
        },
        "x-kubernetes-validations": [{"rule": "self.batch <= self.unhealthy"}],
    }
    spec["properties"]["rolling"] = rolling
    error = crd_error(crd)
    assert error.causes[0].field.endswith("properties[rolling].default")
    assert "evaluating rule: self.batch <= self.unhealthy" in error.causes[0].message
    rolling["x-kubernetes-validations"] = [
        {"rule": "!has(self.batch) || !has(self.unhealthy) || self.batch <= self.unhealthy"}
    ]
    validate_crd(crd)


def test_crd_map_list_needs_keys() -> None:
    crd = copy.deepcopy(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["extensions"]["x-kubernetes-list-map-keys"]
    assert "x-kubernetes-list-map-keys" in crd_error(crd).message


CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.skipif(not CRD_DIR.is_dir(), reason="no generated CRDs")
@pytest.mark.parametrize("path", sorted(CRD_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_the_project_crds_pass_the_api_server_checks(path: Path) -> None:
    validate_crd(yaml.safe_load(path.read_text()))
