"""pydantic models of the fleet.scaleset.dev/v1alpha1 resources: the names, defaults and bounds of the API."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from scaleset_operator.api.durations import DURATION_PATTERN, parse_duration
from scaleset_operator.api.rules import (
    BATCH_WITHIN_UNHEALTHY_LIMIT,
    DNS_LABEL_PATTERN,
    GENERATED_NAME_END_PATTERN,
    HOTPATCHING_NEEDS_GUEST_PATCHING,
    MAX_DEFERRAL_AT_MOST_35_DAYS,
    MAX_DEFERRAL_DAYS,
    MAX_NAME_LENGTH,
    MAX_REPLICAS,
    NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME,
    NAME_FITS_IN_HOSTNAMES,
    NAME_IS_A_DNS_LABEL,
    REPAIR_GRACE_MINUTES,
    REPAIR_GRACE_PERIOD_BOUNDS,
    UPGRADE_DOMAIN_COUNT_LOCKED,
    WALK_WITHIN_UPGRADE_DOMAINS,
)

GROUP: Final = "fleet.scaleset.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "fleet.scaleset.dev/v1alpha1"

# The length bound lets the API server's cost estimate of the CEL rules on durations stay small.
Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        description="A duration such as 30s, 15m, 1h30m or 2d (ISO 8601 such as PT30M is accepted too).",
    ),
]


LOCAL_DATE_TIME_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$"
WINDOW_DURATION_PATTERN: Final = r"^(\d{1,2}:\d{2}|" + DURATION_PATTERN.strip("^$") + r")$"


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields refused with their name."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


# --------------------------------------------------------------------------- shared pieces


class ObjectMeta(BaseModel):
    """The metadata fields the operator reads; the API server owns the rest."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(min_length=1, description="Name of an object in the same namespace.")


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(description="Ready, Progressing, Stalled, ...")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="What a person should know about the transition.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time of the last change.")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed from."
    )


class LabelSelectorRequirement(ApiModel):
    """One requirement of a label selector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    """A metav1.LabelSelector: all matchLabels and all matchExpressions must hold."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


# --------------------------------------------------------------------------- UpgradePolicy


class UpgradeMode(StrEnum):
    AUTOMATIC = "Automatic"
    ROLLING = "Rolling"
    MANUAL = "Manual"
    STAGED = "Staged"


class OnInstanceStartTimeout(StrEnum):
    PROCEED = "Proceed"
    PAUSE = "Pause"
    ROLLBACK = "Rollback"


class UpdateMethod(StrEnum):
    IN_PLACE_IF_POSSIBLE = "InPlaceIfPossible"
    REIMAGE = "Reimage"


class RollingUpgrade(ApiModel):
    """How a rolling upgrade walks the instances; defaults follow the VM scale set API."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [BATCH_WITHIN_UNHEALTHY_LIMIT.schema()]}
    )

    max_batch_instance_percent: int = Field(
        default=20, ge=5, le=100, description="Largest share of instances upgraded in one batch."
    )
    max_unhealthy_instance_percent: int = Field(
        default=20,
        ge=5,
        le=100,
        description="Largest share of unhealthy instances, checked before each batch.",
    )
    max_unhealthy_upgraded_instance_percent: int = Field(
        default=20,
        ge=0,
        le=100,
        description="Largest share of unhealthy upgraded instances, checked after each batch.",
    )
    pause_time_between_batches: Duration = Field(default="0s", description="Wait after a healthy batch.")
    prioritize_unhealthy_instances: bool = Field(
        default=False, description="Upgrade unhealthy instances first."
    )
    max_surge: bool = Field(default=False, description="Create the new instance before removing the old one.")
    rollback_failed_instances_on_policy_breach: bool = Field(
        default=False, description="Roll failed instances back when the upgraded-health limit is breached."
    )

    @model_validator(mode="after")
    def _batch_within_unhealthy_limit(self) -> RollingUpgrade:
        if self.max_batch_instance_percent > self.max_unhealthy_instance_percent:
            raise ValueError(
                f"{BATCH_WITHIN_UNHEALTHY_LIMIT.message} "
                f"(got {self.max_batch_instance_percent} > {self.max_unhealthy_instance_percent})"
            )
        return self

    @property
    def pause_seconds(self) -> float:
        return parse_duration(self.pause_time_between_batches).total_seconds()


class HealthCheck(ApiModel):
    """When an upgraded instance counts as healthy, and what happens when it never does."""

    instance_start_timeout: Duration = Field(
        default="30m", description="Time an upgraded instance gets to become healthy."
    )
    on_instance_start_timeout: OnInstanceStartTimeout = Field(
        default=OnInstanceStartTimeout.PROCEED,
        description="What to do when an instance misses its start timeout.",
    )
    stabilization_period: Duration = Field(
        default="0s", description="How long a Ready instance must stay Ready before it counts as healthy."
    )

    @property
    def start_timeout_seconds(self) -> float:
        return parse_duration(self.instance_start_timeout).total_seconds()

    @property
    def stabilization_seconds(self) -> float:
        return parse_duration(self.stabilization_period).total_seconds()


class SwapMode(StrEnum):
    AUTOMATIC = "Automatic"
    MANUAL = "Manual"


class StagedUpgrade(ApiModel):
    """How a staged upgrade (mode Staged) keeps the set it swapped away from, how many extra
    instances it may add, and who swaps."""

    keep_previous_for: Duration = Field(
        default="1h",
        description="How long the set swapped away from is kept, so that a swap back is instant.",
    )
    max_extra_instances: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Most instances a staged upgrade may run beside production; a larger ScaleSet waits "
            "(StagedCapacity) rather than creating part of its staged set. Unlimited when absent."
        ),
    )

    swap: SwapMode = Field(
        default=SwapMode.AUTOMATIC,
        description=(
            "Automatic: the Services are swapped once the staged set is healthy. Manual: the set waits, "
            "phase ReadyToSwap, until the swap is asked for (scaleset swap, annotation fleet.scaleset.dev/swap)."
        ),
    )

    @property
    def keep_previous_seconds(self) -> float:
        return parse_duration(self.keep_previous_for).total_seconds()


class AutomaticOSUpgrade(ApiModel):
    """Roll out new OS image versions from the ImageCatalog by themselves."""

    enabled: bool = Field(
        default=False, description="Upgrade the OS container when a new image is published."
    )
    disable_automatic_rollback: bool = Field(
        default=False, description="Keep a failed automatic upgrade instead of rolling it back."
    )


class AutomaticExtensionUpgrade(ApiModel):
    """Roll out new extension versions to the extensions that opt in."""

    enabled: bool = Field(default=False, description="Upgrade extensions with enableAutomaticUpgrade.")


class AutomaticGuestPatching(ApiModel):
    """Guest patches from the ImageCatalogs, installed by the operator (the VM API's patchMode
    AutomaticByPlatform); off, patches are only assessed and listed in status.pendingUpdates."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [HOTPATCHING_NEEDS_GUEST_PATCHING.schema()]}
    )

    enabled: bool = Field(
        default=False,
        description="Install the guest patches published for the OS image; off, they are only assessed.",
    )
    enable_hotpatching: bool = Field(
        default=False,
        description=(
            "Apply hotpatches without a restart; off, a hotpatch is installed as a patch that restarts "
            "the instance. Needs enabled."
        ),
    )

    @model_validator(mode="after")
    def _hotpatching_needs_guest_patching(self) -> AutomaticGuestPatching:
        if self.enable_hotpatching and not self.enabled:
            raise ValueError(HOTPATCHING_NEEDS_GUEST_PATCHING.message)
        return self


class UpgradePolicySpec(ApiModel):
    """How and how fast the instances of a ScaleSet are upgraded."""

    mode: UpgradeMode = Field(
        default=UpgradeMode.ROLLING,
        description=(
            "Automatic (all at once), Rolling (batch by batch), Manual (the user walks each update "
            "revision domain by domain: scaleset walk) or "
            "Staged (a second set on the new revision, then every Service swapped to it at once)."
        ),
    )
    rolling_upgrade: RollingUpgrade = Field(
        default_factory=RollingUpgrade, description="Batch sizes and health limits of a rolling upgrade."
    )
    health_check: HealthCheck = Field(
        default_factory=HealthCheck, description="When an upgraded instance counts as healthy."
    )
    staged: StagedUpgrade = Field(
        default_factory=StagedUpgrade,
        description="The set kept after a swap, and the extra capacity (mode Staged).",
    )
    update_method: UpdateMethod = Field(
        default=UpdateMethod.IN_PLACE_IF_POSSIBLE,
        description="InPlaceIfPossible changes images on the live pod; Reimage recreates the pod.",
    )
    automatic_os_upgrade: AutomaticOSUpgrade = Field(
        default_factory=AutomaticOSUpgrade,
        alias="automaticOSUpgrade",
        description="Automatic OS image upgrades from the ImageCatalog.",
    )
    automatic_extension_upgrade: AutomaticExtensionUpgrade = Field(
        default_factory=AutomaticExtensionUpgrade, description="Automatic extension upgrades."
    )
    automatic_guest_patching: AutomaticGuestPatching = Field(
        default_factory=AutomaticGuestPatching,
        description="Guest patches from the ImageCatalog: off by default (assessed, not installed).",
    )


class UpgradePolicy(ApiModel):
    """How the ScaleSets that refer to it are upgraded: mode, batches, health gates."""

    KIND: ClassVar[str] = "UpgradePolicy"
    PLURAL: ClassVar[str] = "upgradepolicies"

    api_version: Literal["fleet.scaleset.dev/v1alpha1"] = API_VERSION
    kind: Literal["UpgradePolicy"] = "UpgradePolicy"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: UpgradePolicySpec = Field(default_factory=UpgradePolicySpec)


# --------------------------------------------------------------------------- ScaleSet


class RetentionAction(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class PersistentVolumeClaimRetentionPolicy(ApiModel):
    """What happens to an instance's PVCs when the instance goes away."""

    when_scaled: RetentionAction = Field(
        default=RetentionAction.RETAIN, description="When the ScaleSet scales the instance away."
    )
    when_deleted: RetentionAction = Field(
        default=RetentionAction.RETAIN, description="When the ScaleSet itself is deleted."
    )


class Extension(ApiModel):
    """A VM extension: a sidecar container with its own upgrade switch and provisioning order."""

    name: str = Field(min_length=1, description="Name of the extension, unique in the ScaleSet.")
    container: str = Field(min_length=1, description="Name of the sidecar container in spec.template.")
    enable_automatic_upgrade: bool = Field(
        default=False, description="Take new versions of the extension from the ImageCatalog."
    )
    provision_after_extensions: list[str] = Field(
        default_factory=list, description="Extensions that must be upgraded before this one."
    )


class ScheduledEvents(ApiModel):
    """Announce reboots, reimages and removals to the instance before they happen."""

    enabled: bool = Field(default=False, description="Publish scheduled events for the instances.")
    not_before_timeout: Duration = Field(
        default="15m",
        description="How long an instance is warned before it is touched (5m to 15m in the VM API).",
    )


class RepairAction(StrEnum):
    REPLACE = "Replace"
    RESTART = "Restart"


class AutomaticRepairs(ApiModel):
    """Repair instances that stay unhealthy, as the scale set API's automaticRepairsPolicy does."""

    enabled: bool = Field(default=False, description="Repair instances that stay not Ready.")
    grace_period: Duration = Field(
        default="30m",
        description=(
            "How long an instance may stay not Ready, counted from its Ready condition's last transition "
            "or from when it was created or updated, whichever is later, before it is repaired (10m to 90m)."
        ),
        json_schema_extra={"x-kubernetes-validations": [REPAIR_GRACE_PERIOD_BOUNDS.schema()]},
    )
    repair_action: RepairAction = Field(
        default=RepairAction.REPLACE,
        description=(
            "Replace: the instance is created again on the revision the ScaleSet has it on now; Restart: "
            "created again on the revision it ran. Either way it keeps its name and data disks."
        ),
    )

    @field_validator("grace_period")
    @classmethod
    def _within_the_api_bounds(cls, value: str) -> str:
        low, high = REPAIR_GRACE_MINUTES
        if not low * 60 <= parse_duration(value).total_seconds() <= high * 60:
            raise ValueError(f"{REPAIR_GRACE_PERIOD_BOUNDS.message} (got {value})")
        return value

    @property
    def grace_seconds(self) -> float:
        return parse_duration(self.grace_period).total_seconds()


class DisruptionBudget(ApiModel):
    """A PodDisruptionBudget the operator keeps over the instances, sized by the policy's budget."""

    enabled: bool = Field(
        default=False,
        description=(
            "Keep a PodDisruptionBudget named after the ScaleSet whose maxUnavailable is the share of "
            "instances maxUnhealthyInstancePercent allows down, so that drains by anyone keep to it."
        ),
    )


# Enough of a PodTemplateSpec for the API server to refuse a template without containers;
# everything else is left to the pods themselves.
_POD_TEMPLATE_SCHEMA: dict[str, Any] = {
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "spec": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                        "required": ["name", "image"],
                        "properties": {"name": {"type": "string"}, "image": {"type": "string"}},
                    },
                }
            },
        },
    },
}

# A claim template is a PersistentVolumeClaim (left to the claims themselves) that must be named: each
# instance's claim is `<metadata.name>-<scaleset>-<ordinal>`, so without a name there is no claim to make.
_CLAIM_TEMPLATE_SCHEMA: dict[str, Any] = {
    "items": {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "required": ["metadata"],
        "properties": {
            "metadata": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}},
            }
        },
    }
}


class ScaleSetSpec(ApiModel):
    """The instances of a ScaleSet, their upgrade domains and how they are upgraded."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [WALK_WITHIN_UPGRADE_DOMAINS.schema()]}
    )

    replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description=f"Number of instances (at most {MAX_REPLICAS}, as a VM scale set).",
    )
    upgrade_domain_count: int = Field(
        default=5, ge=1, le=20, description="Number of upgrade domains; instance N is in domain N mod count."
    )
    upgrade_policy_ref: LocalObjectReference | None = Field(
        default=None, description="UpgradePolicy in the same namespace; built-in defaults when absent."
    )
    template: dict[str, Any] = Field(
        description="Pod template of an instance (a PodTemplateSpec).", json_schema_extra=_POD_TEMPLATE_SCHEMA
    )
    volume_claim_templates: list[dict[str, Any]] = Field(
        default_factory=list,
        description="One PVC per instance and template (PersistentVolumeClaims), kept across reimage.",
        json_schema_extra=_CLAIM_TEMPLATE_SCHEMA,
    )
    persistent_volume_claim_retention_policy: PersistentVolumeClaimRetentionPolicy = Field(
        default_factory=PersistentVolumeClaimRetentionPolicy,
        description="Whether PVCs are kept when instances are scaled away or the ScaleSet is deleted.",
    )
    os_container: str | None = Field(
        default=None, description="The container that is the OS disk; default the first container."
    )
    extensions: list[Extension] = Field(
        default_factory=list,
        description="Sidecar containers managed as VM extensions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    time_zone: str | None = Field(default=None, description="IANA or Windows time zone of the instances.")
    scheduled_events: ScheduledEvents = Field(
        default_factory=ScheduledEvents, description="Scheduled-event notices before disruptive updates."
    )
    automatic_repairs: AutomaticRepairs = Field(
        default_factory=AutomaticRepairs, description="Repair instances that stay not Ready."
    )
    disruption_budget: DisruptionBudget = Field(
        default_factory=DisruptionBudget, description="A PodDisruptionBudget over the instances."
    )
    paused: bool = Field(default=False, description="Stop starting new batches; running ones finish.")
    walk_upgrade_domain: int | None = Field(
        default=None,
        ge=0,
        le=19,
        description=(
            "Manual mode: a change of this value walks the update revision of that moment to domains 0..N; "
            "a value left unchanged never walks a later revision (prefer scaleset walk)."
        ),
    )
    revision_history_limit: int = Field(default=10, ge=0, description="How many old revisions to keep.")

    @field_validator("template")
    @classmethod
    def _template_has_containers(cls, template: dict[str, Any]) -> dict[str, Any]:
        containers = (template.get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("spec.template.spec.containers must list at least one container")
        for index, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name") or not container.get("image"):
                raise ValueError(f"spec.template.spec.containers[{index}] needs a name and an image")
        return template

    @field_validator("volume_claim_templates")
    @classmethod
    def _claim_templates_are_named(cls, templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, template in enumerate(templates):
            name = (template.get("metadata") or {}).get("name") if isinstance(template, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"spec.volumeClaimTemplates[{index}].metadata.name is required: each instance's claim "
                    "is named <metadata.name>-<scaleset>-<ordinal>"
                )
        return templates

    @model_validator(mode="after")
    def _walk_within_upgrade_domains(self) -> ScaleSetSpec:
        if self.walk_upgrade_domain is not None and self.walk_upgrade_domain >= self.upgrade_domain_count:
            raise ValueError(
                f"{WALK_WITHIN_UPGRADE_DOMAINS.message} "
                f"(got {self.walk_upgrade_domain} with {self.upgrade_domain_count} upgrade domains)"
            )
        return self

    @model_validator(mode="after")
    def _named_containers_exist(self) -> ScaleSetSpec:
        names = {c["name"] for c in self.template["spec"]["containers"]}
        if self.os_container is not None and self.os_container not in names:
            raise ValueError(f"spec.osContainer {self.os_container!r} is not a container of spec.template")
        extension_names = {e.name for e in self.extensions}
        if len(extension_names) < len(self.extensions):
            raise ValueError("spec.extensions must not name an extension twice")
        for extension in self.extensions:
            if extension.container not in names:
                raise ValueError(
                    f"spec.extensions[{extension.name}].container {extension.container!r} "
                    "is not a container of spec.template"
                )
            for after in extension.provision_after_extensions:
                if after not in extension_names:
                    raise ValueError(
                        f"spec.extensions[{extension.name}].provisionAfterExtensions names unknown extension {after!r}"
                    )
        cycle = _provision_cycle({e.name: e.provision_after_extensions for e in self.extensions})
        if cycle:
            raise ValueError(
                f"spec.extensions[{cycle[0]}].provisionAfterExtensions: the extensions wait for each other "
                f"in a cycle ({' -> '.join([*cycle, cycle[0]])})"
            )
        return self

    @property
    def os_container_name(self) -> str:
        first: str = self.template["spec"]["containers"][0]["name"]
        return self.os_container or first


def _provision_cycle(waits_for: dict[str, list[str]]) -> list[str]:
    """A cycle of extensions that wait for each other, in order, or [] when there is none."""
    done: set[str] = set()
    for start in sorted(waits_for):
        path: list[str] = []
        stack = [(start, iter(sorted(waits_for[start])))]
        on_path = {start}
        path.append(start)
        while stack:
            name, following = stack[-1]
            step = next(following, None)
            if step is None:
                stack.pop()
                path.pop()
                on_path.discard(name)
                done.add(name)
            elif step in on_path:
                return path[path.index(step) :]
            elif step not in done and step in waits_for:
                stack.append((step, iter(sorted(waits_for[step]))))
                path.append(step)
                on_path.add(step)
    return []


class UpgradePhase(StrEnum):
    IDLE = "Idle"
    ROLLING_FORWARD = "RollingForward"
    PAUSED = "Paused"
    WAITING_FOR_MAINTENANCE_WINDOW = "WaitingForMaintenanceWindow"
    ROLLING_BACK = "RollingBack"
    RESTARTING = "Restarting"
    STAGING = "Staging"
    READY_TO_SWAP = "ReadyToSwap"
    SWAPPING = "Swapping"
    COMPLETED = "Completed"
    FAILED = "Failed"


class BatchStatus(ApiModel):
    """The batch being upgraded now."""

    upgrade_domain: int | None = Field(
        default=None,
        description="The upgrade domain of the batch; absent for Automatic mode's all-at-once batch.",
    )
    instances: list[str] = Field(default_factory=list, description="Pods of the batch.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the batch started.")
    finished_at: str | None = Field(
        default=None, description="RFC 3339 time the operator saw every instance of the batch healthy."
    )
    revision: str | None = Field(default=None, description="The revision the batch moves its instances to.")
    scheduled_events: BatchNotice | None = Field(
        default=None, description="While the batch waits for its instances' scheduled events."
    )


class BatchNotice(ApiModel):
    """The instances of a batch that have been told of it and not yet agreed, and when it starts anyway."""

    waiting_for: list[str] = Field(default_factory=list, description="Instances that have not approved.")
    starts_by: str | None = Field(default=None, description="RFC 3339 time the batch starts at the latest.")


class RollbackStatus(ApiModel):
    """A rollback in progress: instances on `fromRevision` go back to `toRevision`."""

    reason: str = Field(description="Requested, or the policy breach that started it.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the rollback started.")
    from_revision: str | None = Field(default=None, description="The revision being rolled back.")
    to_revision: str | None = Field(default=None, description="The revision instances go back to.")
    instances: list[str] | None = Field(
        default=None,
        description=(
            "Only these instances go back (the failed ones, rollbackFailedInstancesOnPolicyBreach); "
            "absent: every updated instance."
        ),
    )


class RestartStatus(ApiModel):
    """A restart in progress: every instance put on its revision before `requestedAt` is recreated."""

    requested_at: str = Field(description="RFC 3339 time (microseconds) the restart was asked for.")


class ActionStatus(ApiModel):
    """The last imperative action asked for with an annotation, and what became of it."""

    action: str = Field(description="Rollback, Restart, OSUpgrade, Walk, Swap or SwapBack.")
    result: str = Field(description="Accepted or Refused.")
    reason: str = Field(default="", description="Why, as a CamelCase reason.")
    message: str = Field(default="", description="The same in words.")
    at: str | None = Field(default=None, description="RFC 3339 time of the decision.")


class WalkStatus(ApiModel):
    """Manual mode: the upgrade domains of one update revision the user has released."""

    revision: str = Field(
        description="The update revision the walk belongs to; a new revision starts unwalked."
    )
    upgrade_domain: int | None = Field(
        default=None, description="Upgrade domains 0..upgradeDomain of the revision may be updated."
    )
    source: str = Field(
        description="Annotation (scaleset walk) or Spec (a change of spec.walkUpgradeDomain)."
    )
    at: str | None = Field(default=None, description="RFC 3339 time the walk was recorded.")
    spec_walk_upgrade_domain: int | None = Field(
        default=None,
        description="spec.walkUpgradeDomain when last read: only a change of it walks the update revision.",
    )


class UpgradeHistoryEntry(ApiModel):
    """One finished upgrade."""

    from_revision: str | None = None
    to_revision: str
    started_at: str | None = None
    finished_at: str | None = None
    result: str = Field(description="How the upgrade ended, e.g. Completed, RolledBack or Failed.")


class UpgradeStatus(ApiModel):
    """Where the running upgrade stands."""

    phase: UpgradePhase = Field(default=UpgradePhase.IDLE, description="What the upgrade is doing.")
    current_upgrade_domain: int | None = Field(default=None, description="The upgrade domain being upgraded.")
    current_batch: BatchStatus | None = Field(default=None, description="The batch being upgraded.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the upgrade started.")
    locked: bool = Field(
        default=False, description="An upgrade is in progress; spec.upgradeDomainCount cannot change."
    )
    rollback_allowed: bool = Field(default=False, description="The running upgrade can be rolled back.")
    from_revision: str | None = None
    to_revision: str | None = None
    reason: str | None = Field(
        default=None, description="Why the upgrade waits or stopped, as a CamelCase reason."
    )
    message: str | None = Field(default=None, description="The same in words.")
    history: list[UpgradeHistoryEntry] = Field(default_factory=list, description="Recent upgrades.")
    rollback: RollbackStatus | None = Field(default=None, description="The rollback in progress.")
    restart: RestartStatus | None = Field(default=None, description="The restart in progress.")
    rolled_back_revision: str | None = Field(
        default=None,
        description="The revision last rolled back; not tried again while spec.template asks for it.",
    )
    last_action: ActionStatus | None = Field(
        default=None, description="The last action asked for by annotation, accepted or refused."
    )
    walk: WalkStatus | None = Field(
        default=None, description="Manual mode: the upgrade domains walked, and for which revision."
    )


class Slot(StrEnum):
    """One of the two sets of instances of a ScaleSet in Staged mode (pod label fleet.scaleset.dev/slot)."""

    BLUE = "blue"
    GREEN = "green"


class StagedSetStatus(ApiModel):
    """The set of instances being brought up beside production."""

    slot: Slot = Field(description="The slot the set is created in.")
    revision: str = Field(description="The revision its instances run.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the set was started.")


class SwapStatus(ApiModel):
    """A swap in progress: every Service selecting the instances is moving to `toSlot`."""

    to_slot: Slot = Field(description="The slot that becomes production.")
    revision: str = Field(description="The revision that slot runs.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the swap started.")
    back: bool = Field(default=False, description="A swap back, asked for with fleet.scaleset.dev/swap-back.")


class PreviousSetStatus(ApiModel):
    """The set swapped away from, kept so that a swap back is instant."""

    slot: Slot
    revision: str
    kept_until: str | None = Field(default=None, description="RFC 3339 time the set is removed.")


class StagedStatus(ApiModel):
    """Which slot is production, and the staged set, swap and kept set of Staged mode."""

    production: Slot = Field(default=Slot.BLUE, description="The slot every Service selects.")
    production_revision: str | None = Field(default=None, description="The revision production runs.")
    staging: StagedSetStatus | None = Field(default=None, description="The set being brought up.")
    swap: SwapStatus | None = Field(default=None, description="The swap in progress.")
    previous: PreviousSetStatus | None = Field(default=None, description="The set kept for a swap back.")
    swapped_at: str | None = Field(default=None, description="RFC 3339 time of the last swap.")
    swapped_back_revision: str | None = Field(
        default=None,
        description="The revision last swapped away from by a swap back; not staged again while spec.template asks for it.",
    )
    services: list[str] = Field(default_factory=list, description="The Services the last swap moved.")


class UpgradeDomainStatus(ApiModel):
    """The instances of one upgrade domain and their progress."""

    index: int = Field(description="0-based index of the upgrade domain.")
    instances: list[str] = Field(default_factory=list)
    revision: str | None = None
    updated: int = 0
    healthy: int = 0


class PendingUpdate(ApiModel):
    """An update waiting to be applied (OS image, extension or patch)."""

    kind: str = Field(description="OSImage, Extension or Patch.")
    name: str
    classification: str | None = None
    version: str | None = None
    since: str | None = Field(default=None, description="RFC 3339 time the update became available.")
    scope: str | None = Field(
        default=None,
        description="The maintenance scope whose window it waits for: OSImage, Extension or InGuestPatch.",
    )
    waiting_for: str | None = Field(
        default=None,
        description="Why it is not rolling out yet (its window, off-peak hours); absent when it is.",
    )


class AutomaticImage(ApiModel):
    """An image chosen for a container by an automatic (or asked-for) upgrade, over the one spec.template names."""

    container: str = Field(description="The container of spec.template that runs it.")
    repository: str = Field(description="The normalised image repository, e.g. docker.io/library/nginx.")
    version: str = Field(description="The tag chosen.")
    image: str = Field(description="The image the container runs.")
    reason: str = Field(description="AutomaticOSUpgrade, AutomaticExtensionUpgrade or ManualUpgrade.")
    since: str | None = Field(default=None, description="RFC 3339 time the version was chosen.")
    published_at: str | None = Field(default=None, description="RFC 3339 time the version was published.")


class AutomaticExtensionImage(AutomaticImage):
    """An extension's sidecar image chosen by an automatic extension upgrade."""

    name: str = Field(description="The extension, as in spec.extensions[].name.")


class AppliedPatches(ApiModel):
    """Guest patches applied to the OS image the instances run."""

    container: str = Field(description="The OS container of spec.template.")
    base_image: str = Field(
        description="The OS image the patches were applied to; they lapse when it changes."
    )
    image: str | None = Field(default=None, description="The patched image the OS container runs, if any.")
    patch_ids: list[str] = Field(default_factory=list, description="Patches applied with a restart (image).")
    hotpatch_ids: list[str] = Field(default_factory=list, description="Patches applied with no restart.")
    since: str | None = Field(default=None, description="RFC 3339 time of the last patch.")


class RolledBackVersion(ApiModel):
    """A version an automatic upgrade rolled back; it is not chosen again."""

    repository: str = Field(description="The normalised image repository.")
    version: str = Field(description="The tag that was rolled back.")
    at: str | None = Field(default=None, description="RFC 3339 time of the rollback.")


class AutomaticUpdatesStatus(ApiModel):
    """What automatic updates chose: the instances run spec.template with these images and patches."""

    os_image: AutomaticImage | None = Field(
        default=None, description="The OS image chosen over spec.template's."
    )
    extensions: list[AutomaticExtensionImage] = Field(
        default_factory=list, description="Extension images chosen over spec.template's."
    )
    patches: AppliedPatches | None = Field(default=None, description="Guest patches applied.")
    rolled_back: list[RolledBackVersion] = Field(
        default_factory=list, description="Versions rolled back, never chosen again."
    )
    failed_patch_ids: list[str] = Field(
        default_factory=list, description="Patches whose roll-out was rolled back, never applied again."
    )


class MaintenanceWindowStatus(ApiModel):
    """The open or next window of one maintenance scope."""

    scope: str = Field(description="OSImage, Extension, InGuestPatch or Host.")
    start: str = Field(description="ISO 8601, with the window zone's offset at that instant.")
    end: str = Field(description="ISO 8601, with the window zone's offset at that instant.")


class MaintenanceStatus(ApiModel):
    """The maintenance configurations that apply to the ScaleSet and when their windows open."""

    configurations: list[str] = Field(
        default_factory=list, description="Names of the MaintenanceConfigurations that apply."
    )
    next_windows: list[MaintenanceWindowStatus] = Field(
        default_factory=list, description="Per scope, the window open now or else the next one."
    )
    problems: list[str] = Field(
        default_factory=list, description="Configurations whose window cannot be scheduled, and why."
    )


class HostFreezeStatus(ApiModel):
    """Freezes of nodes this ScaleSet's instances run on that wait for a Host maintenance window."""

    nodes: list[str] = Field(
        default_factory=list, description="Nodes labelled for a freeze, not yet announced."
    )
    pending_since: str | None = Field(
        default=None, description="Since when a freeze waits; maxDeferral counts from it."
    )
    reason: str | None = Field(default=None, description="Why it waits, as a CamelCase reason.")
    message: str | None = Field(default=None, description="The same in words.")


class HostMaintenanceStatus(ApiModel):
    """Instances being moved off nodes under maintenance (cordoned, or labelled for maintenance)."""

    batch: list[str] = Field(default_factory=list, description="The instances of the running Host batch.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the batch started.")
    pending_since: str | None = Field(default=None, description="Since when instances wait to be moved.")
    waiting: list[str] = Field(default_factory=list, description="Instances still on such nodes, in order.")
    reason: str | None = Field(default=None, description="Why the work waits or goes, as a CamelCase reason.")
    message: str | None = Field(default=None, description="The same in words.")
    freeze: HostFreezeStatus | None = Field(
        default=None, description="Node freezes waiting for a Host window; absent when none waits."
    )


class RepairEntry(ApiModel):
    """One automatic repair: the repair in flight, or a line of the history."""

    instance: str = Field(description="The instance repaired.")
    action: RepairAction = Field(description="Replace or Restart.")
    started_at: str = Field(description="RFC 3339 time the repair started.")
    reason: str | None = Field(default=None, description="Why: how long the instance was not Ready.")
    pod_uid: str | None = Field(
        default=None, alias="podUID", description="The uid of the pod the repair removes."
    )
    revision: str | None = Field(default=None, description="The revision the instance comes back on.")
    finished_at: str | None = Field(default=None, description="RFC 3339 time the repair ended.")
    result: str | None = Field(
        default=None,
        description="Repaired, StillUnhealthy, Recovered (Ready again before it was removed) or Gone.",
    )


class RepairsStatus(ApiModel):
    """Automatic repairs: the one in flight, why a due repair waits, and the last ones."""

    current: RepairEntry | None = Field(default=None, description="The repair in flight.")
    reason: str | None = Field(default=None, description="Why a due repair waits, as a CamelCase reason.")
    message: str | None = Field(default=None, description="The same in words.")
    history: list[RepairEntry] = Field(default_factory=list, description="The last repairs, oldest first.")


class DisruptionBudgetStatus(ApiModel):
    """The PodDisruptionBudget the operator keeps over the instances (spec.disruptionBudget)."""

    name: str = Field(description="The PodDisruptionBudget's name.")
    max_unavailable: int | None = Field(default=None, description="Its spec.maxUnavailable.")
    problem: str | None = Field(default=None, description="Why it could not be kept, when it could not.")


class ScaleSetStatus(ApiModel):
    """What the operator observed and is doing."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last acted on.")
    replicas: int = Field(default=0, description="Instances that exist.")
    ready_replicas: int = Field(default=0, description="Instances whose pod is Ready.")
    updated_replicas: int = Field(default=0, description="Instances on the update revision.")
    label_selector: str | None = Field(
        default=None, description="Selector of the pods, for the scale subresource."
    )
    current_revision: str | None = None
    update_revision: str | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Stalled and more.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    upgrade: UpgradeStatus = Field(default_factory=UpgradeStatus, description="The running or last upgrade.")
    upgrade_domains: list[UpgradeDomainStatus] = Field(default_factory=list)
    pending_updates: list[PendingUpdate] = Field(default_factory=list)
    automatic_updates: AutomaticUpdatesStatus | None = Field(
        default=None, description="Images and patches chosen by automatic updates; absent when none was."
    )
    maintenance: MaintenanceStatus | None = Field(
        default=None, description="Maintenance configurations that apply; absent when none does."
    )
    host_maintenance: HostMaintenanceStatus | None = Field(
        default=None, description="Instances being moved off nodes under maintenance; absent when none is."
    )
    staged: StagedStatus | None = Field(
        default=None,
        description="Staged mode: which slot is production; absent until a policy in Staged mode applies.",
    )
    repairs: RepairsStatus | None = Field(
        default=None, description="Automatic repairs; absent until spec.automaticRepairs is enabled."
    )
    disruption_budget: DisruptionBudgetStatus | None = Field(
        default=None, description="The PodDisruptionBudget kept over the instances, when enabled."
    )


class ScaleSet(ApiModel):
    """A fleet of pods upgraded by upgrade domain, like a VM scale set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                UPGRADE_DOMAIN_COUNT_LOCKED.schema(),
                NAME_FITS_IN_HOSTNAMES.schema(),
                NAME_IS_A_DNS_LABEL.schema(),
                NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME.schema(),
            ]
        }
    )

    KIND: ClassVar[str] = "ScaleSet"
    PLURAL: ClassVar[str] = "scalesets"

    api_version: Literal["fleet.scaleset.dev/v1alpha1"] = API_VERSION
    kind: Literal["ScaleSet"] = "ScaleSet"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ScaleSetSpec
    status: ScaleSetStatus | None = None

    @model_validator(mode="after")
    def _name_makes_valid_instance_names(self) -> ScaleSet:
        name = self.metadata.name
        if not name:
            return self
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"{NAME_FITS_IN_HOSTNAMES.message} (got {len(name)})")
        if not re.search(DNS_LABEL_PATTERN, name):
            raise ValueError(f"{NAME_IS_A_DNS_LABEL.message} (got {name!r})")
        if re.search(GENERATED_NAME_END_PATTERN, name):
            raise ValueError(f"{NAME_DOES_NOT_END_LIKE_A_GENERATED_NAME.message} (got {name!r})")
        return self


# --------------------------------------------------------------------------- MaintenanceConfiguration


class MaintenanceScope(StrEnum):
    OS_IMAGE = "OSImage"
    EXTENSION = "Extension"
    IN_GUEST_PATCH = "InGuestPatch"
    HOST = "Host"


class PatchClassification(StrEnum):
    CRITICAL = "Critical"
    SECURITY = "Security"
    OTHER = "Other"


class RebootSetting(StrEnum):
    IF_REQUIRED = "IfRequired"
    NEVER = "Never"
    ALWAYS = "Always"


class MaintenanceWindow(ApiModel):
    """When maintenance may happen: a recurring window."""

    start_date_time: str = Field(
        pattern=LOCAL_DATE_TIME_PATTERN,
        description="First start of the window, local to timeZone, as 'YYYY-MM-DD hh:mm'.",
    )
    duration: str = Field(
        pattern=WINDOW_DURATION_PATTERN,
        description="Length of the window as 'hh:mm' or a duration such as 3h (at least 1h30m).",
    )
    time_zone: str = Field(default="UTC", description="IANA or Windows time zone name.")
    recur_every: str = Field(
        min_length=1,
        description="Recurrence: Day, 3Days, Week Saturday,Sunday, Month day1,day15, Month Last Sunday.",
    )
    expiration_date_time: str | None = Field(
        default=None,
        pattern=LOCAL_DATE_TIME_PATTERN,
        description="After this time the window no longer opens, as 'YYYY-MM-DD hh:mm'.",
    )


class InstallPatches(ApiModel):
    """Which guest patches are installed and whether instances may restart for them."""

    classifications_to_include: list[PatchClassification] = Field(
        default_factory=lambda: [PatchClassification.CRITICAL, PatchClassification.SECURITY],
        description="Patch classifications to install.",
    )
    patch_ids_to_exclude: list[str] = Field(default_factory=list, description="Patches never installed.")
    patch_ids_to_include: list[str] = Field(
        default_factory=list, description="Patches installed whatever their classification."
    )
    reboot_setting: RebootSetting = Field(
        default=RebootSetting.IF_REQUIRED, description="When an instance restarts for a patch."
    )


class MaintenanceAssignment(ApiModel):
    """Which ScaleSets the configuration applies to: both selectors must match."""

    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces whose ScaleSets are assigned; all when absent."
    )
    scale_set_selector: LabelSelector | None = Field(
        default=None, description="Labels of the assigned ScaleSets; all when absent."
    )


class MaintenanceConfigurationSpec(ApiModel):
    """A maintenance window and what may happen in it."""

    maintenance_scope: MaintenanceScope = Field(description="The kind of updates the window controls.")
    window: MaintenanceWindow = Field(description="When updates of this scope may be applied.")
    max_deferral: Duration = Field(
        default="35d",
        description="A pending update older than this is applied anyway (at most 35 days).",
        json_schema_extra={"x-kubernetes-validations": [MAX_DEFERRAL_AT_MOST_35_DAYS.schema()]},
    )
    install_patches: InstallPatches = Field(
        default_factory=InstallPatches, description="Guest patches to install (InGuestPatch scope)."
    )
    assignment: MaintenanceAssignment = Field(
        default_factory=MaintenanceAssignment, description="The ScaleSets the configuration applies to."
    )

    @field_validator("max_deferral")
    @classmethod
    def _at_most_35_days(cls, value: str) -> str:
        if parse_duration(value).total_seconds() > MAX_DEFERRAL_DAYS * 86400:
            raise ValueError(f"{MAX_DEFERRAL_AT_MOST_35_DAYS.message} (got {value})")
        return value


class MaintenanceConfiguration(ApiModel):
    """A maintenance window for the ScaleSets it is assigned to, across namespaces."""

    KIND: ClassVar[str] = "MaintenanceConfiguration"
    PLURAL: ClassVar[str] = "maintenanceconfigurations"

    api_version: Literal["fleet.scaleset.dev/v1alpha1"] = API_VERSION
    kind: Literal["MaintenanceConfiguration"] = "MaintenanceConfiguration"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MaintenanceConfigurationSpec


# --------------------------------------------------------------------------- ImageCatalog


class PublishedVersion(ApiModel):
    """A released version."""

    version: str = Field(min_length=1, description="The image tag.")
    published_at: str = Field(description="RFC 3339 time the version was published.")


class PublishedImage(ApiModel):
    """An OS image and its released versions."""

    repository: str = Field(min_length=1, description="Image repository, e.g. registry.example/os/ubuntu.")
    versions: list[PublishedVersion] = Field(default_factory=list, description="Released versions.")


class PublishedExtension(ApiModel):
    """An extension (sidecar) image and its released versions."""

    name: str = Field(min_length=1, description="Extension name as in ScaleSet spec.extensions[].name.")
    repository: str = Field(min_length=1, description="Image repository of the extension.")
    versions: list[PublishedVersion] = Field(default_factory=list, description="Released versions.")


class PublishedPatch(ApiModel):
    """A guest patch: a patched image, or a hotpatch applied without restart."""

    id: str = Field(min_length=1, description="Patch identifier, e.g. KB5030211.")
    classification: PatchClassification = Field(description="Critical, Security or Other.")
    applies_to: list[str] = Field(default_factory=list, description="Image repositories the patch is for.")
    image: str | None = Field(default=None, description="Patched image; applying it restarts the container.")
    hotpatch: bool = Field(default=False, description="Applied without restart (recorded on the pod).")
    reboot_required: bool = Field(default=False, description="The instance restarts to apply the patch.")
    published_at: str | None = Field(default=None, description="RFC 3339 time the patch was published.")

    @model_validator(mode="after")
    def _image_or_hotpatch(self) -> PublishedPatch:
        if self.image is None and not self.hotpatch:
            raise ValueError(f"spec.patches[{self.id}] needs an image or hotpatch: true")
        return self


class ImageCatalogSpec(ApiModel):
    """What publishers have released."""

    images: list[PublishedImage] = Field(default_factory=list, description="OS images.")
    extensions: list[PublishedExtension] = Field(default_factory=list, description="Extension images.")
    patches: list[PublishedPatch] = Field(default_factory=list, description="Guest patches.")


class ImageCatalog(ApiModel):
    """Published OS image, extension and patch versions, the source of automatic upgrades."""

    KIND: ClassVar[str] = "ImageCatalog"
    PLURAL: ClassVar[str] = "imagecatalogs"

    api_version: Literal["fleet.scaleset.dev/v1alpha1"] = API_VERSION
    kind: Literal["ImageCatalog"] = "ImageCatalog"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ImageCatalogSpec = Field(default_factory=ImageCatalogSpec)


RESOURCE_MODELS: tuple[type[ApiModel], ...] = (
    ScaleSet,
    UpgradePolicy,
    MaintenanceConfiguration,
    ImageCatalog,
)
