"""pydantic models of the fleet.scaleset.dev/v1alpha1 resources: the names, defaults and bounds of the API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from scaleset_operator.api.durations import DURATION_PATTERN, parse_duration

GROUP: Final = "fleet.scaleset.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "fleet.scaleset.dev/v1alpha1"

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description="A duration such as 30s, 15m, 1h30m or 2d (ISO 8601 such as PT30M is accepted too).",
    ),
]


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
    name: str = Field(min_length=1, description="Name of an object in the same namespace.")


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class LabelSelectorRequirement(ApiModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


# --------------------------------------------------------------------------- UpgradePolicy


class UpgradeMode(StrEnum):
    AUTOMATIC = "Automatic"
    ROLLING = "Rolling"
    MANUAL = "Manual"


class OnInstanceStartTimeout(StrEnum):
    PROCEED = "Proceed"
    PAUSE = "Pause"
    ROLLBACK = "Rollback"


class UpdateMethod(StrEnum):
    IN_PLACE_IF_POSSIBLE = "InPlaceIfPossible"
    REIMAGE = "Reimage"


class RollingUpgrade(ApiModel):
    """How a rolling upgrade walks the instances; defaults follow the VM scale set API."""

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
                "rollingUpgrade.maxBatchInstancePercent must not exceed maxUnhealthyInstancePercent "
                f"({self.max_batch_instance_percent} > {self.max_unhealthy_instance_percent})"
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


class AutomaticOSUpgrade(ApiModel):
    enabled: bool = False
    disable_automatic_rollback: bool = False


class AutomaticExtensionUpgrade(ApiModel):
    enabled: bool = False


class UpgradePolicySpec(ApiModel):
    mode: UpgradeMode = Field(
        default=UpgradeMode.ROLLING,
        description="Automatic (all at once), Rolling (batch by batch) or Manual (walkUpgradeDomain decides).",
    )
    rolling_upgrade: RollingUpgrade = Field(default_factory=RollingUpgrade)
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    update_method: UpdateMethod = Field(default=UpdateMethod.IN_PLACE_IF_POSSIBLE)
    automatic_os_upgrade: AutomaticOSUpgrade = Field(
        default_factory=AutomaticOSUpgrade, alias="automaticOSUpgrade"
    )
    automatic_extension_upgrade: AutomaticExtensionUpgrade = Field(default_factory=AutomaticExtensionUpgrade)


class UpgradePolicy(ApiModel):
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
    when_scaled: RetentionAction = RetentionAction.RETAIN
    when_deleted: RetentionAction = RetentionAction.RETAIN


class Extension(ApiModel):
    """A VM extension: a sidecar container with its own upgrade switch and provisioning order."""

    name: str = Field(min_length=1)
    container: str = Field(min_length=1, description="Name of the sidecar container in spec.template.")
    enable_automatic_upgrade: bool = False
    provision_after_extensions: list[str] = Field(default_factory=list)


class ScheduledEvents(ApiModel):
    enabled: bool = False
    not_before_timeout: Duration = Field(
        default="15m",
        description="How long an instance is warned before it is touched (5m to 15m in the VM API).",
    )


class ScaleSetSpec(ApiModel):
    replicas: int = Field(default=1, ge=0, description="Number of instances.")
    upgrade_domain_count: int = Field(
        default=5, ge=1, le=20, description="Number of upgrade domains; instance N is in domain N mod count."
    )
    upgrade_policy_ref: LocalObjectReference | None = Field(
        default=None, description="UpgradePolicy in the same namespace; built-in defaults when absent."
    )
    template: dict[str, Any] = Field(description="Pod template of an instance (a PodTemplateSpec).")
    volume_claim_templates: list[dict[str, Any]] = Field(
        default_factory=list, description="One PVC per instance and template, kept across reimage."
    )
    persistent_volume_claim_retention_policy: PersistentVolumeClaimRetentionPolicy = Field(
        default_factory=PersistentVolumeClaimRetentionPolicy
    )
    os_container: str | None = Field(
        default=None, description="The container that is the OS disk; default first."
    )
    extensions: list[Extension] = Field(default_factory=list)
    time_zone: str | None = Field(default=None, description="IANA or Windows time zone of the instances.")
    scheduled_events: ScheduledEvents = Field(default_factory=ScheduledEvents)
    paused: bool = Field(default=False, description="Stop starting new batches; running ones finish.")
    walk_upgrade_domain: int | None = Field(
        default=None, ge=0, le=19, description="Manual mode: upgrade domains 0..N may be upgraded."
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

    @model_validator(mode="after")
    def _named_containers_exist(self) -> ScaleSetSpec:
        names = {c["name"] for c in self.template["spec"]["containers"]}
        if self.os_container is not None and self.os_container not in names:
            raise ValueError(f"spec.osContainer {self.os_container!r} is not a container of spec.template")
        extension_names = {e.name for e in self.extensions}
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
        return self

    @property
    def os_container_name(self) -> str:
        first: str = self.template["spec"]["containers"][0]["name"]
        return self.os_container or first


class UpgradePhase(StrEnum):
    IDLE = "Idle"
    ROLLING_FORWARD = "RollingForward"
    PAUSED = "Paused"
    WAITING_FOR_MAINTENANCE_WINDOW = "WaitingForMaintenanceWindow"
    ROLLING_BACK = "RollingBack"
    COMPLETED = "Completed"
    FAILED = "Failed"


class BatchStatus(ApiModel):
    upgrade_domain: int
    instances: list[str] = Field(default_factory=list)
    started_at: str | None = None


class UpgradeHistoryEntry(ApiModel):
    from_revision: str | None = None
    to_revision: str
    started_at: str | None = None
    finished_at: str | None = None
    result: str


class UpgradeStatus(ApiModel):
    phase: UpgradePhase = UpgradePhase.IDLE
    current_upgrade_domain: int | None = None
    current_batch: BatchStatus | None = None
    started_at: str | None = None
    last_batch_finished_at: str | None = None
    locked: bool = False
    rollback_allowed: bool = False
    from_revision: str | None = None
    to_revision: str | None = None
    message: str | None = None
    history: list[UpgradeHistoryEntry] = Field(default_factory=list)


class UpgradeDomainStatus(ApiModel):
    index: int
    instances: list[str] = Field(default_factory=list)
    revision: str | None = None
    updated: int = 0
    healthy: int = 0


class PendingUpdate(ApiModel):
    kind: str
    name: str
    classification: str | None = None
    version: str | None = None
    since: str | None = None


class ScaleSetStatus(ApiModel):
    observed_generation: int | None = None
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    label_selector: str | None = None
    current_revision: str | None = None
    update_revision: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    upgrade: UpgradeStatus = Field(default_factory=UpgradeStatus)
    upgrade_domains: list[UpgradeDomainStatus] = Field(default_factory=list)
    pending_updates: list[PendingUpdate] = Field(default_factory=list)


class ScaleSet(ApiModel):
    KIND: ClassVar[str] = "ScaleSet"
    PLURAL: ClassVar[str] = "scalesets"

    api_version: Literal["fleet.scaleset.dev/v1alpha1"] = API_VERSION
    kind: Literal["ScaleSet"] = "ScaleSet"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ScaleSetSpec
    status: ScaleSetStatus | None = None


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
    start_date_time: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$",
        description="First start of the window, local to timeZone, as 'YYYY-MM-DD hh:mm'.",
    )
    duration: str = Field(
        pattern=r"^(\d{1,2}:\d{2}|" + DURATION_PATTERN.strip("^$") + r")$",
        description="Length of the window as 'hh:mm' or a duration such as 3h (at least 1h30m).",
    )
    time_zone: str = Field(default="UTC", description="IANA or Windows time zone name.")
    recur_every: str = Field(
        min_length=1,
        description="Recurrence: Day, 3Days, Week Saturday,Sunday, Month day1,day15, Month Last Sunday.",
    )
    expiration_date_time: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$"
    )


class InstallPatches(ApiModel):
    classifications_to_include: list[PatchClassification] = Field(
        default_factory=lambda: [PatchClassification.CRITICAL, PatchClassification.SECURITY]
    )
    patch_ids_to_exclude: list[str] = Field(default_factory=list)
    patch_ids_to_include: list[str] = Field(default_factory=list)
    reboot_setting: RebootSetting = RebootSetting.IF_REQUIRED


class MaintenanceAssignment(ApiModel):
    namespace_selector: LabelSelector | None = None
    scale_set_selector: LabelSelector | None = None


class MaintenanceConfigurationSpec(ApiModel):
    maintenance_scope: MaintenanceScope
    window: MaintenanceWindow
    max_deferral: Duration = Field(
        default="35d", description="A pending update older than this is applied anyway."
    )
    install_patches: InstallPatches = Field(default_factory=InstallPatches)
    assignment: MaintenanceAssignment = Field(default_factory=MaintenanceAssignment)

    @field_validator("max_deferral")
    @classmethod
    def _at_most_35_days(cls, value: str) -> str:
        if parse_duration(value).total_seconds() > 35 * 86400:
            raise ValueError("spec.maxDeferral must be at most 35 days")
        return value


class MaintenanceConfiguration(ApiModel):
    KIND: ClassVar[str] = "MaintenanceConfiguration"
    PLURAL: ClassVar[str] = "maintenanceconfigurations"

    api_version: Literal["fleet.scaleset.dev/v1alpha1"] = API_VERSION
    kind: Literal["MaintenanceConfiguration"] = "MaintenanceConfiguration"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MaintenanceConfigurationSpec


# --------------------------------------------------------------------------- ImageCatalog


class PublishedVersion(ApiModel):
    version: str = Field(min_length=1)
    published_at: str = Field(description="RFC 3339 time the version was published.")


class PublishedImage(ApiModel):
    repository: str = Field(min_length=1, description="Image repository, e.g. registry.example/os/ubuntu.")
    versions: list[PublishedVersion] = Field(default_factory=list)


class PublishedExtension(ApiModel):
    name: str = Field(min_length=1)
    repository: str = Field(min_length=1)
    versions: list[PublishedVersion] = Field(default_factory=list)


class PublishedPatch(ApiModel):
    id: str = Field(min_length=1)
    classification: PatchClassification
    applies_to: list[str] = Field(default_factory=list, description="Image repositories the patch is for.")
    image: str | None = Field(default=None, description="Patched image; applying it restarts the container.")
    hotpatch: bool = Field(default=False, description="Applied without restart (recorded on the pod).")
    reboot_required: bool = False
    published_at: str | None = None

    @model_validator(mode="after")
    def _image_or_hotpatch(self) -> PublishedPatch:
        if self.image is None and not self.hotpatch:
            raise ValueError(f"spec.patches[{self.id}] needs an image or hotpatch: true")
        return self


class ImageCatalogSpec(ApiModel):
    images: list[PublishedImage] = Field(default_factory=list)
    extensions: list[PublishedExtension] = Field(default_factory=list)
    patches: list[PublishedPatch] = Field(default_factory=list)


class ImageCatalog(ApiModel):
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
