"""When an instance counts as healthy, and when an updated one has run out of time to start."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from rollout_sim import NEW, OLD, T0, make_policy

from scaleset_operator.planning.instances import HealthGate, InstanceState

GATE = HealthGate(stabilization=timedelta(seconds=30), start_timeout=timedelta(minutes=10))


def instance(**fields: Any) -> InstanceState:
    return replace(InstanceState("web-0", 0, NEW, ready=True), **fields)


def test_ready_instance_is_healthy_once_stable_for_the_stabilization_period() -> None:
    ready = instance(ready_since=T0, updated_at=T0 - timedelta(minutes=1))
    assert not GATE.is_healthy(ready, T0 + timedelta(seconds=29))
    assert GATE.is_healthy(ready, T0 + timedelta(seconds=30))


def test_readiness_counts_from_the_update_when_the_ready_condition_is_older() -> None:
    patched = instance(ready_since=T0 - timedelta(hours=1), updated_at=T0)
    assert GATE.healthy_at(patched) == T0 + timedelta(seconds=30)


def test_not_ready_missing_or_terminating_instances_are_never_healthy() -> None:
    assert not GATE.is_healthy(instance(ready=False), T0)
    assert not GATE.is_healthy(InstanceState.missing("web-0", 0), T0)
    assert not GATE.is_healthy(instance(terminating=True), T0)


def test_ready_instance_with_no_known_times_counts_as_healthy() -> None:
    assert GATE.is_healthy(instance(), T0)


def test_updated_instance_times_out_at_its_start_deadline() -> None:
    starting = instance(ready=False, updated_at=T0)
    assert GATE.start_deadline(starting, NEW) == T0 + timedelta(minutes=10)
    assert not GATE.timed_out(starting, NEW, T0 + timedelta(minutes=9))
    assert GATE.timed_out(starting, NEW, T0 + timedelta(minutes=10))


def test_instance_not_yet_on_the_revision_counts_from_the_batch_start() -> None:
    recreating = instance(revision=OLD, ready=False, terminating=True, updated_at=T0 - timedelta(days=3))
    assert GATE.start_deadline(recreating, NEW, batch_started_at=T0) == T0 + timedelta(minutes=10)
    assert GATE.start_deadline(recreating, NEW) is None
    assert not GATE.timed_out(recreating, NEW, T0 + timedelta(days=1))


def test_healthy_instance_never_times_out() -> None:
    assert not GATE.timed_out(instance(updated_at=T0 - timedelta(days=1)), NEW, T0)


def test_gate_reads_its_durations_from_the_policy() -> None:
    policy = make_policy(healthCheck={"instanceStartTimeout": "5m", "stabilizationPeriod": "PT45S"})
    assert HealthGate.of(policy.health_check) == HealthGate(timedelta(seconds=45), timedelta(minutes=5))
