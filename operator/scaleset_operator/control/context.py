"""What one reconcile pass works on: the snapshot it read, the outcome it leaves, and time stamps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scaleset_operator.api.models import ScaleSetSpec, UpgradePolicySpec
from scaleset_operator.identity import slot_base
from scaleset_operator.planning.instances import timestamp as timestamp
from scaleset_operator.planning.instances import timestamp_precise as timestamp_precise
from scaleset_operator.planning.rollout import HISTORY_KEPT as HISTORY_KEPT
from scaleset_operator.planning.rollout import batch_ordinals as batch_ordinals

RESYNC_SECONDS = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EvictionRefused:
    """An instance the API server would not evict: a PodDisruptionBudget allows no disruption now.

    `budget` names the PodDisruptionBudget when the API server said which; `message` is its cause.
    """

    instance: str
    budget: str | None
    message: str

    def describe(self) -> str:
        by = f"PodDisruptionBudget {self.budget}" if self.budget else "a PodDisruptionBudget"
        return f"evicting {self.instance} is refused by {by} ({self.message}); nothing was deleted"


@dataclass
class Outcome:
    """What a pass leaves for the caller: when to look again even if nothing changes.

    `failure` is set when the pass could not do its work (a refusal reported in conditions, an API
    error): the caller then looks again after its back-off (at least `retry_after`, the server's
    Retry-After), not after `requeue_after`, and counts the pass as failed for that reason.
    """

    requeue_after: float | None = RESYNC_SECONDS
    step: str = ""
    notes: list[str] = field(default_factory=list)
    # Removals refused in this pass (InstanceControl.remove_instance): they wait, and status says why.
    refused: list[EvictionRefused] = field(default_factory=list)
    failure: str | None = None
    retry_after: float | None = None

    @classmethod
    def failed(cls, reason: str, retry_after: float | None = None) -> Outcome:
        """A pass that ended on `reason`: looked at again after the back-off, however long that is."""
        return cls(step=reason, failure=reason, retry_after=retry_after)

    def wait_until(self, moment: datetime | None, now: datetime) -> None:
        """Look again by `moment` at the latest (or soon, when it is unknown)."""
        seconds = 1.0 if moment is None else max(0.05, (moment - now).total_seconds())
        if self.requeue_after is not None:
            self.requeue_after = min(self.requeue_after, seconds)


@dataclass
class Snapshot:
    """A ScaleSet as one pass read it, with its policy, revisions and pods.

    `template_revision` is the revision of `spec.template`; `update_revision` the one instances are
    moved to now. They differ while a rollback runs and after it, while the template still asks for
    the revision that was rolled back: then instances go (and stay) on the revision the upgrade came from.
    """

    scaleset: dict[str, Any]
    spec: ScaleSetSpec
    policy: UpgradePolicySpec
    revisions: dict[str, dict[str, Any]]
    update_revision: str
    current_revision: str
    pods: dict[int, dict[str, Any]]
    surges: dict[int, dict[str, Any]]
    template_checked: bool = False
    # The status as the API server last returned it: what a merge patch is computed against.
    stored_status: dict[str, Any] = field(default_factory=dict)
    template_revision: str = ""
    # Staged mode: the production slot (None for a ScaleSet never staged), whose pods are `pods`, and
    # the pods of the other slot (the staged set, or the set kept after a swap), by ordinal.
    slot: str | None = None
    standby: dict[int, dict[str, Any]] = field(default_factory=dict)
    # The claims labelled with the ScaleSet's name, by name: its own, and any kept from an earlier
    # ScaleSet of the same name (planning.claims tells them apart).
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every MaintenanceConfiguration as read, and the labels of the ScaleSet's namespace.
    maintenance_configurations: tuple[dict[str, Any], ...] = ()
    namespace_labels: dict[str, str] = field(default_factory=dict)
    # Every ImageCatalog as read.
    image_catalogs: tuple[dict[str, Any], ...] = ()
    # Every node as read (host maintenance and freezes decide from them).
    nodes: tuple[dict[str, Any], ...] = ()
    # The namespace's Services by name when the ScaleSet is staged or was (None: not read, none is
    # changed); a Service the pass patched is replaced by what the API server returned, so that a second
    # change in the same pass (a swap after a pin) is made against it.
    services: dict[str, dict[str, Any]] | None = None
    # The PodDisruptionBudget of the ScaleSet's name, when the pass looked at it (`disruption_budget_read`).
    disruption_budget_read: bool = False
    disruption_budget: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        name: str = self.scaleset["metadata"]["name"]
        return name

    @property
    def namespace(self) -> str:
        namespace: str = self.scaleset["metadata"]["namespace"]
        return namespace

    @property
    def uid(self) -> str:
        uid: str = self.scaleset["metadata"]["uid"]
        return uid

    @property
    def resource_version(self) -> str | None:
        version: str | None = self.scaleset["metadata"].get("resourceVersion")
        return version

    @property
    def instance_base(self) -> str:
        """What production instances are named after: `<name>`, or `<name>-green` when green serves."""
        return slot_base(self.name, self.slot)

    @property
    def upgrade(self) -> dict[str, Any]:
        upgrade: dict[str, Any] = (self.scaleset.get("status") or {}).get("upgrade") or {}
        return upgrade

    def template_of(self, revision: str | None) -> dict[str, Any] | None:
        stored = self.revisions.get(revision or "")
        if stored is None:
            return None
        template: dict[str, Any] = (stored.get("data") or {}).get("template") or {}
        return template

    @property
    def target_template(self) -> dict[str, Any]:
        """The template of the revision instances are moved to."""
        return self.template_of(self.update_revision) or self.spec.template


class InvalidInput(Exception):
    """Input the operator cannot honour; reported in conditions, never acted on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Conflict(Exception):
    """Another writer changed the ScaleSet since this pass read it; the pass ends and starts again."""


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new` for the keys `new` names, nulling
    the keys of nested objects that `new` dropped (a plain merge would keep stale ones)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            for gone in before.keys() - value.keys():
                nested[gone] = None
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch
