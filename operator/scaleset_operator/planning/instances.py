"""The snapshot the planner decides from: instances as the API shows them, the batch in flight, health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scaleset_operator.api.models import HealthCheck


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time as status and annotations hold it, in UTC; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class InstanceState:
    """One instance (pod) as read from the API server.

    `revision` is the instance's revision label. `ready` must be True only when the pod is Ready on the
    revision it is labelled with (its container statuses report the template's images): right after an
    in-place patch a pod can still show the old Ready=True for a moment. `ready_since` is the
    lastTransitionTime of Ready=True; `updated_at` when the instance was put on its current revision
    (created or patched). A pod that does not exist is listed with `exists=False`; one being deleted has
    `terminating=True`. The upgrade domain is not carried: the planner derives it from the ordinal and
    the ScaleSet's upgradeDomainCount, so a stale label cannot mislead it.
    """

    name: str
    ordinal: int
    revision: str | None
    ready: bool
    ready_since: datetime | None = None
    updated_at: datetime | None = None
    exists: bool = True
    terminating: bool = False

    @classmethod
    def missing(cls, name: str, ordinal: int) -> InstanceState:
        """An instance whose pod does not exist (yet): the controller creates it at the update revision."""
        return cls(name=name, ordinal=ordinal, revision=None, ready=False, exists=False)

    @property
    def running(self) -> bool:
        """The pod exists and is not on its way out: something the planner can update."""
        return self.exists and not self.terminating


@dataclass(frozen=True)
class Batch:
    """Instances updated together; `upgrade_domain` is None for the Automatic mode's all-at-once batch."""

    upgrade_domain: int | None
    ordinals: tuple[int, ...]


@dataclass(frozen=True)
class RolloutState:
    """What the controller recorded in status.upgrade before acting, read back on every reconcile.

    `batch` is the last batch started (status.upgrade.currentBatch), `revision` the update revision it
    was started for (status.upgrade.toRevision) and `batch_started_at` when it was recorded. The record
    stays after the batch finishes: the planner tells from the instances whether it is done, so a
    restarted operator needs nothing else to carry on, and the pause between batches is measured from
    the moment the instances show the batch became healthy. Clear the batch when the rollout completes:
    an instance of the last batch failing long afterwards is a health matter, not a start timeout.
    Kubernetes stamps conditions to the second, so the instances can show the batch healthy up to a
    second early; `batch_finished_at`, the moment the controller saw the batch finished and recorded,
    keeps the pause from coming up short.
    """

    batch: Batch | None = None
    revision: str | None = None
    batch_started_at: datetime | None = None
    batch_finished_at: datetime | None = None


@dataclass(frozen=True)
class HealthGate:
    """When an instance counts as healthy, and when an updated one has run out of time to get there."""

    stabilization: timedelta = timedelta(0)
    start_timeout: timedelta = timedelta(minutes=30)

    @classmethod
    def of(cls, health_check: HealthCheck) -> HealthGate:
        return cls(
            stabilization=timedelta(seconds=health_check.stabilization_seconds),
            start_timeout=timedelta(seconds=health_check.start_timeout_seconds),
        )

    def healthy_at(self, instance: InstanceState) -> datetime | None:
        """The moment a Ready instance counts (or counted) as healthy, when that can be known.

        Readiness is measured from the later of Ready=True and the update, so a Ready condition left over
        from before an in-place patch never lets the new revision count as healthy early. None when the
        instance is not Ready, or Ready with neither time known (it then counts as healthy already).
        """
        if not (instance.running and instance.ready):
            return None
        marks = [mark for mark in (instance.ready_since, instance.updated_at) if mark is not None]
        return max(marks) + self.stabilization if marks else None

    def is_healthy(self, instance: InstanceState, now: datetime) -> bool:
        if not (instance.running and instance.ready):
            return False
        healthy_at = self.healthy_at(instance)
        return healthy_at is None or healthy_at <= now

    def start_deadline(
        self, instance: InstanceState, update_revision: str, batch_started_at: datetime | None = None
    ) -> datetime | None:
        """When an instance being moved to `update_revision` must be healthy by.

        Counted from the moment it reached the revision; an instance not there yet (its pod being
        recreated, or absent) is counted from the start of its batch, and has no deadline without one.
        """
        if instance.running and instance.revision == update_revision and instance.updated_at is not None:
            return instance.updated_at + self.start_timeout
        if batch_started_at is not None:
            return batch_started_at + self.start_timeout
        return None

    def timed_out(
        self,
        instance: InstanceState,
        update_revision: str,
        now: datetime,
        batch_started_at: datetime | None = None,
    ) -> bool:
        """An instance that is still not healthy at its start deadline has failed to start."""
        if self.is_healthy(instance, now):
            return False
        deadline = self.start_deadline(instance, update_revision, batch_started_at)
        return deadline is not None and deadline <= now
