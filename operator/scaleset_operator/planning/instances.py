"""The snapshot the planner decides from: instances as the API shows them, the batch in flight, health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scaleset_operator.api.models import HealthCheck

# Waiting reasons a container does not leave by itself: the kubelet tries again and fails the same way
# until someone changes the pod's spec or what it refers to (an image name that does not parse, a
# Secret or ConfigMap it names that does not exist, an image not on the node under imagePullPolicy Never).
CANNOT_START = frozenset({"InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull"})
# A pull that failed (ErrImagePull) and the kubelet's back-off before the next (ImagePullBackOff),
# 10 s doubling to 5 minutes: a registry that hiccups passes, a name or tag that does not exist does not.
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})
# Still failing to pull this long after the kubelet took the instance (or its new image) means at least
# three pulls failed in a row (at about 0, 10 and 30 s), past the point a transient registry error
# explains; an instanceStartTimeout of 30 minutes would hold a batch for some 9 more failed pulls.
PULL_FAILURE_BOUND = timedelta(seconds=60)


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time as status and annotations hold it, in UTC; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def timestamp(moment: datetime) -> str:
    """A time as status and annotations hold it: RFC 3339 in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_precise(moment: datetime) -> str:
    """The same to the microsecond (when a batch was seen healthy: the pause counts from it)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ContainerWaiting:
    """A container of an instance that waits to start: its name, the kubelet's reason and message."""

    container: str
    reason: str
    message: str = ""


@dataclass(frozen=True)
class InstanceState:
    """One instance (pod) as read from the API server.

    `revision` is the instance's revision label. `ready` must be True only when the pod is Ready on the
    revision it is labelled with (its container statuses report the template's images): right after an
    in-place patch a pod can still show the old Ready=True for a moment. `ready_since` is the
    lastTransitionTime of Ready=True; `updated_at` when the instance was put on its current revision
    (created or patched). A pod that does not exist is listed with `exists=False`; one being deleted has
    `terminating=True`. The upgrade domain is not carried: the planner derives it from the ordinal and
    the ScaleSet's upgradeDomainCount, so a stale label cannot mislead it. `waiting` holds the containers
    waiting to start with their reasons (containerStatuses[].state.waiting), and `started_at` is when a
    kubelet took the pod (status.startTime).
    """

    name: str
    ordinal: int
    revision: str | None
    ready: bool
    ready_since: datetime | None = None
    updated_at: datetime | None = None
    exists: bool = True
    terminating: bool = False
    waiting: tuple[ContainerWaiting, ...] = ()
    started_at: datetime | None = None

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
    pull_failure_bound: timedelta = PULL_FAILURE_BOUND

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
        An instance that will not start by itself (`cannot_start_since`) has used its time up then.
        """
        deadline = None
        if instance.running and instance.revision == update_revision and instance.updated_at is not None:
            deadline = instance.updated_at + self.start_timeout
        elif batch_started_at is not None:
            deadline = batch_started_at + self.start_timeout
        stuck = self.cannot_start_since(instance) if instance.revision == update_revision else None
        if stuck is not None and (deadline is None or stuck < deadline):
            return stuck
        return deadline

    def cannot_start_since(self, instance: InstanceState) -> datetime | None:
        """From when an instance that is not Ready counts as one that will not start by itself.

        At once (from when it reached its revision or a kubelet took it) for a reason of CANNOT_START;
        `pull_failure_bound` after that for an image the kubelet keeps failing to pull; None otherwise.
        """
        if not instance.running or instance.ready or not instance.waiting:
            return None
        marks = [mark for mark in (instance.updated_at, instance.started_at) if mark is not None]
        if not marks:
            return None
        since = max(marks)
        reasons = {waiting.reason for waiting in instance.waiting}
        if reasons & CANNOT_START:
            return since
        if reasons & PULL_FAILURES:
            return since + self.pull_failure_bound
        return None

    def start_failure(self, instance: InstanceState, now: datetime) -> ContainerWaiting | None:
        """The waiting container that keeps an instance from ever starting by itself, or None."""
        since = self.cannot_start_since(instance)
        if since is None or since > now:
            return None
        failing = [w for w in instance.waiting if w.reason in CANNOT_START | PULL_FAILURES]
        return next((w for w in failing if w.reason in CANNOT_START), failing[0] if failing else None)

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


def start_failures(
    instances: Sequence[InstanceState], gate: HealthGate, revision: str, now: datetime
) -> str | None:
    """One sentence naming the instances on `revision` that will not start by themselves and why, or None.

    `web-0, web-1 cannot start by themselves: container "os" is waiting with InvalidImageName (...)`;
    instances failing for different reasons are named with each reason.
    """
    by_reason: dict[tuple[str, str, str], list[str]] = {}
    for instance in instances:
        if instance.revision != revision:
            continue
        failure = gate.start_failure(instance, now)
        if failure is not None:
            by_reason.setdefault((failure.container, failure.reason, failure.message), []).append(
                instance.name
            )
    if not by_reason:
        return None
    parts = []
    for (container, reason, message), names in by_reason.items():
        why = f"{reason} ({message.rstrip('.')})" if message else reason
        verb = "cannot start by itself" if len(names) == 1 else "cannot start by themselves"
        parts.append(f'{", ".join(names)} {verb}: container "{container}" is waiting with {why}')
    return "; ".join(parts) + "."
