"""Rules checked twice, by the API server as CEL x-kubernetes-validations and by the models in Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class ValidationRule:
    """One CEL rule of a CRD schema and the sentence both the API server and the operator report."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def schema(self) -> dict[str, Any]:
        """The rule as an entry of `x-kubernetes-validations`."""
        entry: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry


MAX_DEFERRAL_DAYS: Final = 35
# The VM scale set limit of one set; a bigger fleet is several ScaleSets. Without a bound a typo
# (replicas: 1000000000000) would have the operator create pods until the cluster gives out.
MAX_REPLICAS: Final = 1000
# Instances carry `<scaleset>-<revision hash>` (up to 11 more characters) in a label value, and a
# label value has at most 63 characters: StatefulSet names meet the same limit.
MAX_NAME_LENGTH: Final = 52

NAME_FITS_IN_LABELS: Final = ValidationRule(
    rule=f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
    message=(
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the instances carry it, with a "
        "revision hash, in labels of at most 63"
    ),
)

# The API server also judges the schema's own default (`rollingUpgrade: {}`) by this rule, before
# the fields' defaults are filled in: without the has() guards it refuses the whole CRD.
BATCH_WITHIN_UNHEALTHY_LIMIT: Final = ValidationRule(
    rule=(
        "!has(self.maxBatchInstancePercent) || !has(self.maxUnhealthyInstancePercent)"
        " || self.maxBatchInstancePercent <= self.maxUnhealthyInstancePercent"
    ),
    message=(
        "spec.rollingUpgrade.maxBatchInstancePercent must not exceed "
        "spec.rollingUpgrade.maxUnhealthyInstancePercent"
    ),
    field_path=".maxBatchInstancePercent",
)

WALK_WITHIN_UPGRADE_DOMAINS: Final = ValidationRule(
    rule="!has(self.walkUpgradeDomain) || self.walkUpgradeDomain < self.upgradeDomainCount",
    message="spec.walkUpgradeDomain must be less than spec.upgradeDomainCount",
    field_path=".walkUpgradeDomain",
)

# The VM API's enableHotpatching "must be set" with patchMode AutomaticByPlatform: here, with
# automaticGuestPatching.enabled. The has() guards let the schema's own default ({}) pass.
HOTPATCHING_NEEDS_GUEST_PATCHING: Final = ValidationRule(
    rule="!has(self.enableHotpatching) || !self.enableHotpatching || (has(self.enabled) && self.enabled)",
    message="spec.automaticGuestPatching.enableHotpatching needs spec.automaticGuestPatching.enabled",
    field_path=".enableHotpatching",
)

# A transition rule on the root of the ScaleSet: rules on spec cannot see status, and only
# status says whether an upgrade holds the lock.
UPGRADE_DOMAIN_COUNT_LOCKED: Final = ValidationRule(
    rule=(
        "self.spec.upgradeDomainCount == oldSelf.spec.upgradeDomainCount"
        " || !has(oldSelf.status) || !has(oldSelf.status.upgrade)"
        " || !has(oldSelf.status.upgrade.locked) || !oldSelf.status.upgrade.locked"
    ),
    message="spec.upgradeDomainCount cannot change while an upgrade is in progress",
    field_path=".spec.upgradeDomainCount",
    reason="FieldValueForbidden",
)

# Standard CEL cannot add up the parts of "34d12h" (and has no "d" unit in duration()), so
# the API server judges the one-unit forms people write (35d, 840h, P35D); the operator
# checks every form again in Python.
_ONE_UNIT_DAYS_OR_HOURS = r"^([0-9]+d|P[0-9]+D|[0-9]+h)$"
_AT_MOST_35_DAYS = r"^(0*([0-9]|[12][0-9]|3[0-5])d|P0*([0-9]|[12][0-9]|3[0-5])D|0*([0-9]{1,2}|[1-7][0-9]{2}|8[0-3][0-9]|840)h)$"
MAX_DEFERRAL_AT_MOST_35_DAYS: Final = ValidationRule(
    rule=f"!self.matches('{_ONE_UNIT_DAYS_OR_HOURS}') || self.matches('{_AT_MOST_35_DAYS}')",
    message=f"spec.maxDeferral must be at most {MAX_DEFERRAL_DAYS} days",
)
