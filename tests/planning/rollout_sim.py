"""A fleet and a controller loop in memory, for driving the planner as the operator will."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.planning.batches import StartBatch, Step, next_step
from scaleset_operator.planning.instances import Batch, HealthGate, InstanceState, RolloutState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OLD = "web-old"
NEW = "web-new"


def make_policy(**spec: Any) -> UpgradePolicySpec:
    """An UpgradePolicySpec from camelCase fields as a user writes them."""
    return UpgradePolicySpec.model_validate(spec)


def healthy_fleet(
    replicas: int, revision: str = OLD, since: datetime = T0 - timedelta(hours=1)
) -> list[InstanceState]:
    return [
        InstanceState(f"web-{o}", o, revision, ready=True, ready_since=since, updated_at=since)
        for o in range(replicas)
    ]


@dataclass
class FleetSim:
    """Instances, the status record and a clock; `reconcile` acts on the planner's steps as the controller does.

    An instance taken to a revision goes down until `become_ready`, which never comes on one of the
    `bad_revisions`; `broken` instances are down for a reason of their own and stay down until healed,
    and a healed one stays `recovering` (down through no fault of the rollout) until it is healthy.
    """

    replicas: int
    policy: UpgradePolicySpec
    upgrade_domain_count: int = 5
    walk_upgrade_domain: int | None = None
    paused: bool = False
    update_revision: str = NEW
    now: datetime = T0
    instances: dict[int, InstanceState] = field(default_factory=dict)
    broken: set[int] = field(default_factory=set)
    recovering: set[int] = field(default_factory=set)
    bad_revisions: set[str] = field(default_factory=set)
    rollout: RolloutState = field(default_factory=RolloutState)
    started: list[StartBatch] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    # For each batch applied: how many instances were unhealthy just before, and how many healthy ones
    # it took down.
    taken_down: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.instances:
            self.instances = {
                i.ordinal: i for i in healthy_fleet(self.replicas, since=self.now - timedelta(days=1))
            }

    @property
    def gate(self) -> HealthGate:
        return HealthGate.of(self.policy.health_check)

    def plan(self) -> Step:
        return next_step(
            replicas=self.replicas,
            upgrade_domain_count=self.upgrade_domain_count,
            walk_upgrade_domain=self.walk_upgrade_domain,
            paused=self.paused,
            policy=self.policy,
            update_revision=self.update_revision,
            instances=list(self.instances.values()),
            rollout=self.rollout,
            now=self.now,
        )

    def apply(self, step: StartBatch) -> None:
        """Record the batch in status, then update its instances not yet on the update revision."""
        unhealthy = self.unhealthy()
        moved = {o for o in step.batch.ordinals if self.instances[o].revision != self.update_revision}
        self.taken_down.append((len(unhealthy), len(moved - unhealthy)))
        resumed = step.batch == self.rollout.batch and self.rollout.revision == self.update_revision
        started_at = self.rollout.batch_started_at if resumed else self.now
        self.rollout = RolloutState(
            batch=step.batch, revision=self.update_revision, batch_started_at=started_at
        )
        for ordinal in step.batch.ordinals:
            instance = self.instances[ordinal]
            if instance.revision != self.update_revision:
                self.instances[ordinal] = replace(
                    instance,
                    revision=self.update_revision,
                    ready=False,
                    ready_since=None,
                    updated_at=self.now,
                )

    def reconcile(self, rounds: int = 4) -> Step:
        """Plan and act until the planner has nothing to start, as the controller re-plans after each write."""
        self.recovering = {
            o for o in self.recovering if not self.gate.is_healthy(self.instances[o], self.now)
        }
        for _ in range(rounds):
            step = self.plan()
            self.steps.append(step)
            if not isinstance(step, StartBatch):
                return step
            self.started.append(step)
            self.apply(step)
        return self.plan()

    def become_ready(self, ordinal: int) -> None:
        instance = self.instances[ordinal]
        if ordinal not in self.broken and instance.revision not in self.bad_revisions and not instance.ready:
            self.instances[ordinal] = replace(instance, ready=True, ready_since=self.now)

    def break_instance(self, ordinal: int) -> None:
        self.broken.add(ordinal)
        self.instances[ordinal] = replace(self.instances[ordinal], ready=False, ready_since=None)

    def heal(self, ordinal: int) -> None:
        if ordinal in self.broken:
            self.broken.discard(ordinal)
            self.recovering.add(ordinal)
        self.become_ready(ordinal)

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def unhealthy(self) -> set[int]:
        """Every instance not healthy now, for whatever reason."""
        return {o for o, i in self.instances.items() if not self.gate.is_healthy(i, self.now)}

    def down_for_the_rollout(self) -> set[int]:
        """Instances the rollout took down: not healthy, and not down of their own accord."""
        own_accord = self.broken | self.recovering
        return {
            o
            for o, i in self.instances.items()
            if o not in own_accord and not self.gate.is_healthy(i, self.now)
        }

    def in_progress(self) -> set[int]:
        """Instances the rollout took down that are still inside the start timeout of their own update."""
        timeout = self.gate.start_timeout
        return {
            o
            for o in self.down_for_the_rollout()
            if (updated_at := self.instances[o].updated_at) is not None and updated_at + timeout > self.now
        }

    def batches(self) -> list[Batch]:
        return [step.batch for step in self.started]
