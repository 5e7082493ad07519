"""Loading resources from YAML: one-sentence errors naming file, object and field; rules checked on change."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaleset_operator.api.loading import (
    InvalidResource,
    load_documents,
    load_resource,
    load_resources,
    parse_quantity,
    parse_resource,
    validate_scaleset_update,
)
from scaleset_operator.api.models import (
    RESOURCE_MODELS,
    ImageCatalog,
    MaintenanceConfiguration,
    ScaleSet,
    ScaleSetSpec,
    UpgradePolicy,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE: dict[str, Any] = {
    "spec": {
        "containers": [{"name": "web", "image": "nginx:1.27"}],
        "volumes": [{"name": "temp", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "cache", "emptyDir": {}}],
    }
}
SCALESET: dict[str, Any] = {
    "apiVersion": "fleet.scaleset.dev/v1alpha1",
    "kind": "ScaleSet",
    "metadata": {"name": "web"},
    "spec": {"replicas": 14, "template": TEMPLATE},
}


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refusal(doc: dict[str, Any], expected: Any = ScaleSet, source: str = "examples/web.yaml") -> str:
    with pytest.raises(InvalidResource) as refused:
        parse_resource(doc, expected, source=source)
    return str(refused.value)


def with_spec(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SCALESET)
    doc["spec"].update(fields)
    return doc


# --------------------------------------------------------------------------- files


def test_missing_file_is_one_sentence_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidResource) as refused:
        load_documents(tmp_path / "x.yaml")
    assert str(refused.value) == f"{tmp_path / 'x.yaml'}: no such file."


def test_broken_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: ScaleSet\nspec:\n  replicas: 3\n    x: y\n")
    with pytest.raises(InvalidResource) as refused:
        load_documents(path)
    assert (
        str(refused.value)
        == f"{path}: not valid YAML (line 4, column 6: mapping values are not allowed here)."
    )


def test_multiple_documents_are_read_and_empty_ones_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "---\nkind: A\n---\n---\nkind: B\n...\n")
    assert [d["kind"] for d in load_documents(path)] == ["A", "B"]


def test_a_kubernetes_list_is_unfolded(tmp_path: Path) -> None:
    path = write(
        tmp_path, yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [SCALESET, SCALESET]})
    )
    assert [d["kind"] for d in load_documents(path)] == ["ScaleSet", "ScaleSet"]


def test_a_document_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: ScaleSet\n---\n- a\n- b\n")
    with pytest.raises(InvalidResource, match="document 2 is a list and not a mapping"):
        load_documents(path)


def test_load_resources_reads_every_example() -> None:
    kinds = {
        type(resource).__name__
        for path in sorted((ROOT / "examples").rglob("*.yaml"))
        for resource in load_resources(path, RESOURCE_MODELS)
    }
    assert kinds == {"ScaleSet", "UpgradePolicy", "MaintenanceConfiguration", "ImageCatalog"}


def test_load_resource_finds_the_one_object_of_a_kind() -> None:
    scaleset = load_resource(ROOT / "examples" / "scaleset.yaml", ScaleSet)
    assert (scaleset.metadata.name, scaleset.spec.replicas, scaleset.spec.upgrade_domain_count) == (
        "web",
        14,
        5,
    )
    with pytest.raises(InvalidResource, match="expected one UpgradePolicy, found no"):
        load_resource(ROOT / "examples" / "scaleset.yaml", UpgradePolicy)


def test_load_resources_can_skip_other_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump_all([SCALESET, {"apiVersion": "v1", "kind": "ConfigMap"}]))
    assert [r.kind for r in load_resources(path, ScaleSet, skip_other_kinds=True)] == ["ScaleSet"]
    with pytest.raises(InvalidResource, match="expected a ScaleSet, found a ConfigMap"):
        load_resources(path, ScaleSet)


# --------------------------------------------------------------------------- kinds


def test_wrong_kind_names_what_was_expected_and_found() -> None:
    assert (
        refusal(SCALESET, UpgradePolicy, "policy.yaml")
        == "policy.yaml: expected an UpgradePolicy, found a ScaleSet."
    )


def test_one_of_several_kinds_may_be_expected() -> None:
    doc = {"apiVersion": "v1", "kind": "Pod"}
    assert (
        refusal(doc, (ScaleSet, ImageCatalog), "x.yaml")
        == "x.yaml: expected a ScaleSet or an ImageCatalog, found a Pod."
    )


def test_wrong_api_version_is_refused() -> None:
    doc = {**SCALESET, "apiVersion": "apps/v1"}
    assert (
        refusal(doc)
        == 'examples/web.yaml: ScaleSet "web": apiVersion must be fleet.scaleset.dev/v1alpha1 (got apps/v1).'
    )


def test_parse_resource_returns_the_model() -> None:
    scaleset = parse_resource(SCALESET, ScaleSet)
    assert isinstance(scaleset, ScaleSet)
    assert scaleset.spec.replicas == 14


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    "spec,sentence",
    [
        ({"upgradeDomainCount": 25}, "spec.upgradeDomainCount must be at most 20 (got 25)"),
        ({"upgradeDomainCount": 0}, "spec.upgradeDomainCount must be at least 1 (got 0)"),
        ({"replicas": "many"}, "spec.replicas must be a whole number (got 'many')"),
        ({"paused": "perhaps"}, "spec.paused must be true or false (got 'perhaps')"),
        ({"upgradeDomains": 5}, "spec.upgradeDomains is an unknown field"),
        ({"upgradePolicyRef": {}}, "spec.upgradePolicyRef.name is required"),
        ({"upgradePolicyRef": {"name": ""}}, "spec.upgradePolicyRef.name must not be empty"),
        ({"upgradePolicyRef": "rolling"}, "spec.upgradePolicyRef must be a mapping (got a string)"),
        ({"extensions": {"name": "x"}}, "spec.extensions must be a list (got a mapping)"),
        (
            {"extensions": [{"name": "logs"}]},
            "spec.extensions[0].container is required",
        ),
        (
            {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Keep"}},
            "spec.persistentVolumeClaimRetentionPolicy.whenScaled must be one of 'Retain' or 'Delete' (got 'Keep')",
        ),
        (
            {"scheduledEvents": {"notBeforeTimeout": "soon"}},
            "spec.scheduledEvents.notBeforeTimeout must be a duration such as 30s, 15m, 1h30m or 2d (got 'soon')",
        ),
        (
            {"upgradeDomainCount": 3, "walkUpgradeDomain": 3},
            "spec.walkUpgradeDomain must be less than spec.upgradeDomainCount (got 3 with 3 upgrade domains)",
        ),
        (
            {"template": {"spec": {"containers": []}}},
            "spec.template.spec.containers must list at least one container",
        ),
        ({"template": None}, "spec.template must be a mapping (got null)"),
        (
            {"scheduledEvents": {"notBeforeTimeout": "1" * 40 + "s"}},
            "spec.scheduledEvents.notBeforeTimeout must be at most 32 characters long",
        ),
    ],
)
def test_field_errors_are_one_sentence_naming_the_field(spec: dict[str, Any], sentence: str) -> None:
    assert refusal(with_spec(**spec)) == f'examples/web.yaml: ScaleSet "web": {sentence}.'


def test_every_problem_is_named_in_the_one_sentence() -> None:
    message = refusal(with_spec(upgradeDomainCount=25, replicas=-1))
    assert message == (
        'examples/web.yaml: ScaleSet "web": spec.replicas must be at least 0 (got -1); '
        "spec.upgradeDomainCount must be at most 20 (got 25)."
    )
    assert message.count(".") == message.count("spec.") + message.count(".yaml") + 1


def test_missing_spec_is_named() -> None:
    doc = {k: v for k, v in SCALESET.items() if k != "spec"}
    assert refusal(doc) == 'examples/web.yaml: ScaleSet "web": spec is required.'


def test_policy_rule_violation_reads_as_the_api_server_says_it() -> None:
    doc = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "UpgradePolicy",
        "metadata": {"name": "rolling"},
        "spec": {"mode": "Fast", "rollingUpgrade": {"maxBatchInstancePercent": 50}},
    }
    assert refusal(doc, UpgradePolicy, "policy.yaml") == (
        'policy.yaml: UpgradePolicy "rolling": '
        "spec.mode must be one of 'Automatic', 'Rolling', 'Manual' or 'Staged' (got 'Fast'); "
        "spec.rollingUpgrade.maxBatchInstancePercent must not exceed "
        "spec.rollingUpgrade.maxUnhealthyInstancePercent (got 50 > 20)."
    )


def test_unquoted_version_numbers_get_a_hint() -> None:
    doc = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ImageCatalog",
        "metadata": {"name": "default"},
        "spec": {
            "images": [{"repository": "nginx", "versions": [{"version": 1.27, "publishedAt": "2024-05-29"}]}]
        },
    }
    assert refusal(doc, ImageCatalog, "c.yaml") == (
        'c.yaml: ImageCatalog "default": spec.images[0].versions[0].version must be a string (got 1.27; quote it in YAML).'
    )


def test_window_fields_are_explained_in_words() -> None:
    doc = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "MaintenanceConfiguration",
        "metadata": {"name": "nights"},
        "spec": {
            "maintenanceScope": "OSImage",
            "window": {"startDateTime": "saturday", "duration": "long", "recurEvery": "Day"},
            "maxDeferral": "60d",
        },
    }
    assert refusal(doc, MaintenanceConfiguration, "m.yaml") == (
        'm.yaml: MaintenanceConfiguration "nights": '
        "spec.window.startDateTime must be a date and time as 'YYYY-MM-DD hh:mm' (got 'saturday'); "
        "spec.window.duration must be 'hh:mm' or a duration such as 3h (got 'long'); "
        "spec.maxDeferral must be at most 35 days (got 60d)."
    )


def test_unnamed_object_is_named_by_kind_only() -> None:
    doc = with_spec(upgradeDomainCount=30)
    del doc["metadata"]
    assert (
        refusal(doc, ScaleSet, "x.yaml")
        == "x.yaml: ScaleSet: spec.upgradeDomainCount must be at most 20 (got 30)."
    )


def test_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(with_spec(upgradeDomainCount=25)), "web.yaml")
    with pytest.raises(InvalidResource) as refused:
        load_resources(path, ScaleSet)
    assert (
        str(refused.value) == f'{path}: ScaleSet "web": spec.upgradeDomainCount must be at most 20 (got 25).'
    )
    assert refused.value.kind == "ScaleSet"
    assert refused.value.name == "web"
    assert refused.value.problems == ["spec.upgradeDomainCount must be at most 20 (got 25)"]


# --------------------------------------------------------------------------- changes during an upgrade


def spec(domains: int = 5, temp: str | None = "1Gi") -> ScaleSetSpec:
    template = copy.deepcopy(TEMPLATE)
    empty_dir = template["spec"]["volumes"][0]["emptyDir"]
    if temp is None:
        del empty_dir["sizeLimit"]
    else:
        empty_dir["sizeLimit"] = temp
    return ScaleSetSpec.model_validate({"upgradeDomainCount": domains, "template": template})


def test_domain_count_may_change_when_no_upgrade_runs() -> None:
    assert validate_scaleset_update(spec(5), spec(3), upgrade_in_progress=False) == []


def test_domain_count_change_is_refused_while_an_upgrade_runs() -> None:
    assert validate_scaleset_update(spec(5), spec(3), upgrade_in_progress=True) == [
        "spec.upgradeDomainCount cannot change while an upgrade is in progress (from 5 to 3)"
    ]


@pytest.mark.parametrize(
    "old,new,refused",
    [
        ("1Gi", "500Mi", True),
        ("1Gi", "1073741824", False),
        ("1Gi", "1G", True),
        ("1G", "1Gi", False),
        ("2G", "1.5Gi", True),
        ("500Mi", "1Gi", False),
        (None, "10Gi", True),
        ("1Gi", None, False),
    ],
)
def test_shrinking_an_empty_dir_is_refused_while_an_upgrade_runs(
    old: str | None, new: str | None, refused: bool
) -> None:
    problems = validate_scaleset_update(spec(temp=old), spec(temp=new), upgrade_in_progress=True)
    if refused:
        shown_old = old if old is not None else "unlimited"
        assert problems == [
            "spec.template.spec.volumes[temp].emptyDir.sizeLimit cannot shrink while an upgrade is in progress "
            f"(from {shown_old} to {new})"
        ]
    else:
        assert problems == []
    assert validate_scaleset_update(spec(temp=old), spec(temp=new), upgrade_in_progress=False) == []


def test_a_new_empty_dir_volume_is_not_a_shrink() -> None:
    old = spec()
    new = spec()
    new.template["spec"]["volumes"].append({"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}})
    assert validate_scaleset_update(old, new, upgrade_in_progress=True) == []


def test_an_unreadable_size_limit_is_reported() -> None:
    (problem,) = validate_scaleset_update(spec(), spec(temp="lots"), upgrade_in_progress=True)
    assert problem.startswith(
        "spec.template.spec.volumes[temp].emptyDir.sizeLimit 'lots' is not a Kubernetes quantity"
    )


@pytest.mark.parametrize(
    "text,value",
    [
        ("1Gi", 2**30),
        ("500Mi", 500 * 2**20),
        ("2G", 2 * 10**9),
        ("100m", Decimal("0.1")),
        ("1e3", 1000),
        ("64", 64),
    ],
)
def test_quantities_parse_like_the_api_server(text: str, value: Decimal | int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "1GB", "", "1.2.3Gi"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)
