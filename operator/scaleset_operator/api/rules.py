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
# A pod's hostname is its name, and a hostname is a DNS label: at most 63 characters.
HOSTNAME_MAX_LENGTH: Final = 63
# The words the operator puts after a ScaleSet's name in the pods it names (identity.py): the green
# slot of a staged upgrade, `<scaleset>-green-<ordinal>`, and a surge pod, `<scaleset>-surge-<ordinal>`.
STAGED_SLOT_WORD: Final = "green"
SURGE_WORD: Final = "surge"
# The longest of those names is the surge pod of the green slot at the highest ordinal, so a name that
# leaves room for this suffix fits every hostname and every label value (`<scaleset>-<revision hash>`
# adds at most 11 characters).
LONGEST_NAME_SUFFIX: Final = f"-{STAGED_SLOT_WORD}-{SURGE_WORD}-{MAX_REPLICAS - 1}"
MAX_NAME_LENGTH: Final = HOSTNAME_MAX_LENGTH - len(LONGEST_NAME_SUFFIX)
DNS_LABEL_PATTERN: Final = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
GENERATED_NAME_END_PATTERN: Final = f"(^|-)({STAGED_SLOT_WORD}|{SURGE_WORD})$"

NAME_FITS_IN_HOSTNAMES: Final = ValidationRule(
    rule=f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
    message=(
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the longest instance name adds "
        f"{len(LONGEST_NAME_SUFFIX)} (<name>{LONGEST_NAME_SUFFIX}), and a pod's hostname, its name, has at "
        f"most {HOSTNAME_MAX_LENGTH}"
    ),
)

NAME_IS_A_DNS_LABEL: Final = ValidationRule(
    rule=f"self.metadata.name.matches('{DNS_LABEL_PATTERN}')",
    message=(
        "metadata.name must be a DNS label (lowercase letters, digits and '-', starting and ending with a "
        "letter or digit): it begins the hostname of each instance"
    ),
)

# Refusing these endings makes the pod names of two ScaleSets distinct by construction: `web-green`
# would be named like the green slot of `web`, `web-surge` like its surge pods.
NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME: Final = ValidationRule(
    rule=f"!self.metadata.name.matches('{GENERATED_NAME_END_PATTERN}')",
    message=(
        f"metadata.name must not be or end in -{STAGED_SLOT_WORD} or -{SURGE_WORD}: the ScaleSet web names "
        f"its staged instances web-{STAGED_SLOT_WORD}-N and its surge pods web-{SURGE_WORD}-N"
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

# The scale set API's bounds of automaticRepairsPolicy.gracePeriod. CEL's duration() reads the Go
# forms (10m, 1h30m, 600s); the others (2d, PT30M) are checked by the operator in Python.
REPAIR_GRACE_MINUTES: Final = (10, 90)
_GO_DURATION = r"^([0-9]+([.][0-9]+)?(ms|s|m|h))+$"
REPAIR_GRACE_PERIOD_BOUNDS: Final = ValidationRule(
    rule=(
        f"!self.matches('{_GO_DURATION}') || "
        f"(duration(self) >= duration('{REPAIR_GRACE_MINUTES[0]}m') && "
        f"duration(self) <= duration('{REPAIR_GRACE_MINUTES[1]}m'))"
    ),
    message=(
        f"spec.automaticRepairs.gracePeriod must be between {REPAIR_GRACE_MINUTES[0]}m and "
        f"{REPAIR_GRACE_MINUTES[1]}m, as the scale set API bounds it"
    ),
)
