"""The API models: defaults as DESIGN.md states them, bounds refused, rules checked in Python."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from scaleset_operator.api.durations import parse_duration
from scaleset_operator.api.models import (
    HealthCheck,
    MaintenanceConfigurationSpec,
    PublishedPatch,
    RollingUpgrade,
    ScaleSet,
    ScaleSetSpec,
    UpgradePolicySpec,
)

TEMPLATE = {
    "spec": {"containers": [{"name": "os", "image": "busybox:1.36"}, {"name": "agent", "image": "a:1"}]}
}
WINDOW = {"startDateTime": "2025-01-04 22:00", "duration": "3h", "recurEvery": "Week Saturday"}


def scaleset_spec(**fields: Any) -> ScaleSetSpec:
    return ScaleSetSpec.model_validate({"template": TEMPLATE, **fields})


def test_scaleset_defaults_to_five_upgrade_domains_and_unpaused() -> None:
    spec = scaleset_spec()
    assert spec.upgrade_domain_count == 5
    assert spec.replicas == 1
    assert spec.paused is False
    assert spec.walk_upgrade_domain is None
    assert spec.upgrade_policy_ref is None
    assert spec.persistent_volume_claim_retention_policy.when_scaled == "Retain"
    assert spec.persistent_volume_claim_retention_policy.when_deleted == "Retain"
    assert spec.scheduled_events.enabled is False


def test_upgrade_policy_defaults_follow_the_vm_scale_set_api() -> None:
    policy = UpgradePolicySpec()
    rolling = policy.rolling_upgrade
    assert policy.mode == "Rolling"
    assert policy.update_method == "InPlaceIfPossible"
    assert rolling.max_batch_instance_percent == 20
    assert rolling.max_unhealthy_instance_percent == 20
    assert rolling.max_unhealthy_upgraded_instance_percent == 20
    assert rolling.pause_seconds == 0
    assert (rolling.prioritize_unhealthy_instances, rolling.max_surge) == (False, False)
    assert rolling.rollback_failed_instances_on_policy_breach is False
    assert policy.health_check.start_timeout_seconds == 30 * 60
    assert policy.health_check.on_instance_start_timeout == "Proceed"
    assert policy.automatic_os_upgrade.enabled is False
    assert policy.automatic_extension_upgrade.enabled is False
    # Guest patching is something a user enables, hotpatching too (patchMode, enableHotpatching).
    assert policy.automatic_guest_patching.enabled is False
    assert policy.automatic_guest_patching.enable_hotpatching is False
    assert policy.staged.swap == "Automatic"


def test_maintenance_defaults_defer_35_days_and_install_critical_and_security_patches() -> None:
    spec = MaintenanceConfigurationSpec.model_validate({"maintenanceScope": "InGuestPatch", "window": WINDOW})
    assert parse_duration(spec.max_deferral).days == 35
    assert spec.install_patches.classifications_to_include == ["Critical", "Security"]
    assert spec.install_patches.reboot_setting == "IfRequired"
    assert spec.window.time_zone == "UTC"


@pytest.mark.parametrize("count", [1, 5, 20])
def test_upgrade_domain_count_from_one_to_twenty_is_accepted(count: int) -> None:
    assert scaleset_spec(upgradeDomainCount=count).upgrade_domain_count == count


@pytest.mark.parametrize("count", [0, 21, -3])
def test_upgrade_domain_count_outside_one_to_twenty_is_refused(count: int) -> None:
    with pytest.raises(ValidationError, match="upgradeDomainCount"):
        scaleset_spec(upgradeDomainCount=count)


@pytest.mark.parametrize("percent", [4, 101, 0])
def test_batch_percent_outside_five_to_hundred_is_refused(percent: int) -> None:
    with pytest.raises(ValidationError, match="maxBatchInstancePercent"):
        RollingUpgrade.model_validate(
            {"maxBatchInstancePercent": percent, "maxUnhealthyInstancePercent": 100}
        )


def test_batch_larger_than_the_unhealthy_limit_is_refused_with_both_values() -> None:
    with pytest.raises(
        ValidationError, match=r"must not exceed .*maxUnhealthyInstancePercent \(got 50 > 20\)"
    ):
        RollingUpgrade.model_validate({"maxBatchInstancePercent": 50})


def test_negative_replicas_are_refused() -> None:
    with pytest.raises(ValidationError, match="replicas"):
        scaleset_spec(replicas=-1)


def test_walked_domain_must_be_one_of_the_upgrade_domains() -> None:
    assert scaleset_spec(upgradeDomainCount=3, walkUpgradeDomain=2).walk_upgrade_domain == 2
    with pytest.raises(
        ValidationError, match=r"walkUpgradeDomain must be less than spec\.upgradeDomainCount"
    ):
        scaleset_spec(upgradeDomainCount=3, walkUpgradeDomain=3)


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="upgradeDomains"):
        scaleset_spec(upgradeDomains=5)


def test_template_without_containers_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one container"):
        ScaleSetSpec.model_validate({"template": {"spec": {"containers": []}}})


@pytest.mark.parametrize("claim", [{"spec": {}}, {"metadata": {}}, {"metadata": {"name": ""}}])
def test_claim_template_without_a_name_is_refused_naming_the_field(claim: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"spec\.volumeClaimTemplates\[1\]\.metadata\.name is required"):
        scaleset_spec(volumeClaimTemplates=[{"metadata": {"name": "data"}}, claim])


def test_os_container_and_extension_containers_must_exist_in_the_template() -> None:
    assert scaleset_spec(osContainer="agent").os_container_name == "agent"
    assert scaleset_spec().os_container_name == "os"
    with pytest.raises(ValidationError, match="osContainer 'db' is not a container"):
        scaleset_spec(osContainer="db")
    with pytest.raises(ValidationError, match="container 'shipper' is not a container"):
        scaleset_spec(extensions=[{"name": "logs", "container": "shipper"}])


def test_extensions_must_be_named_once_and_ordered_after_known_extensions() -> None:
    agent = {"name": "agent", "container": "agent"}
    with pytest.raises(ValidationError, match="must not name an extension twice"):
        scaleset_spec(extensions=[agent, agent])
    with pytest.raises(ValidationError, match="unknown extension 'monitor'"):
        scaleset_spec(extensions=[{**agent, "provisionAfterExtensions": ["monitor"]}])


@pytest.mark.parametrize(
    ("waits", "cycle"),
    [
        ({"a": ["b"], "b": ["a"]}, "a -> b -> a"),
        ({"a": ["a"]}, "a -> a"),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, "b -> c -> b"),
    ],
)
def test_extensions_that_wait_for_each_other_are_refused(waits: dict[str, list[str]], cycle: str) -> None:
    extensions = [
        {"name": name, "container": "agent", "provisionAfterExtensions": after}
        for name, after in waits.items()
    ]
    first = cycle.split(" ")[0]
    with pytest.raises(
        ValidationError, match=rf"spec.extensions\[{first}\].provisionAfterExtensions: .*\({cycle}\)"
    ):
        scaleset_spec(extensions=extensions)
    chain = [
        {"name": "a", "container": "agent"},
        {"name": "b", "container": "agent", "provisionAfterExtensions": ["a"]},
    ]
    assert [e.name for e in scaleset_spec(extensions=chain).extensions] == ["a", "b"]


def test_max_deferral_over_35_days_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"spec.maxDeferral must be at most 35 days \(got 36d\)"):
        MaintenanceConfigurationSpec.model_validate(
            {"maintenanceScope": "OSImage", "window": WINDOW, "maxDeferral": "36d"}
        )


@pytest.mark.parametrize("text", ["soon", "10", "5 minutes", ""])
def test_durations_must_look_like_durations(text: str) -> None:
    with pytest.raises(ValidationError, match="instanceStartTimeout"):
        HealthCheck.model_validate({"instanceStartTimeout": text})


def test_iso_durations_are_accepted_too() -> None:
    assert HealthCheck.model_validate({"instanceStartTimeout": "PT45M"}).start_timeout_seconds == 45 * 60


def test_patch_needs_an_image_or_to_be_a_hotpatch() -> None:
    assert PublishedPatch.model_validate(
        {"id": "HP-1", "classification": "Critical", "hotpatch": True}
    ).hotpatch
    with pytest.raises(ValidationError, match="needs an image or hotpatch"):
        PublishedPatch.model_validate({"id": "KB1", "classification": "Security"})


def test_scaleset_round_trips_through_camel_case() -> None:
    document = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 14,
            "upgradeDomainCount": 5,
            "template": TEMPLATE,
            "upgradePolicyRef": {"name": "r"},
        },
    }
    scaleset = ScaleSet.model_validate(document)
    dumped = scaleset.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["spec"]["upgradeDomainCount"] == 5
    assert dumped["spec"]["upgradePolicyRef"] == {"name": "r"}
    assert ScaleSet.model_validate(dumped) == scaleset
