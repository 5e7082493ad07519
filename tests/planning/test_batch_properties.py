"""Properties of the planner over generated fleets, policies and interleavings of health and template changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rollout_sim import NEW, OLD, T0, FleetSim, make_policy

from scaleset_operator.api.models import UpgradeMode, UpgradePolicySpec
from scaleset_operator.planning.batches import (
    Complete,
    StartBatch,
    StepReason,
    Stop,
    Wait,
    batch_size,
    next_step,
)
from scaleset_operator.planning.domains import spread, upgrade_domain_of
from scaleset_operator.planning.instances import Batch, HealthGate, InstanceState, RolloutState
from scaleset_operator.planning.preview import plan_rollout

FAST = settings(max_examples=150, deadline=None)


@st.composite
def policies(
    draw: st.DrawFn, modes: tuple[str, ...] = ("Rolling", "Manual", "Automatic")
) -> UpgradePolicySpec:
    batch_percent = draw(st.integers(5, 100))
    return make_policy(
        mode=draw(st.sampled_from(modes)),
        rollingUpgrade={
            "maxBatchInstancePercent": batch_percent,
            "maxUnhealthyInstancePercent": draw(st.integers(batch_percent, 100)),
            "maxUnhealthyUpgradedInstancePercent": draw(st.integers(0, 100)),
            "pauseTimeBetweenBatches": draw(st.sampled_from(["0s", "30s", "5m"])),
            "prioritizeUnhealthyInstances": draw(st.booleans()),
            "maxSurge": draw(st.booleans()),
        },
        healthCheck={
            "instanceStartTimeout": draw(st.sampled_from(["2m", "30m"])),
            "onInstanceStartTimeout": draw(st.sampled_from(["Proceed", "Pause", "Rollback"])),
            "stabilizationPeriod": draw(st.sampled_from(["0s", "1m"])),
        },
    )


fleet_sizes = st.integers(0, 40)
domain_counts = st.integers(1, 20)


# --------------------------------------------------------------------------- the preview of a healthy rollout


@FAST
@given(replicas=fleet_sizes, count=domain_counts, policy=policies(modes=("Rolling", "Automatic")))
def test_every_instance_lands_in_exactly_one_batch(
    replicas: int, count: int, policy: UpgradePolicySpec
) -> None:
    preview = plan_rollout(replicas=replicas, upgrade_domain_count=count, policy=policy)
    planned = [ordinal for batch in preview.batches for ordinal in batch.ordinals]
    assert sorted(planned) == list(range(replicas))
    assert preview.held_by is None


@FAST
@given(replicas=fleet_sizes, count=domain_counts, policy=policies(modes=("Rolling",)))
def test_batches_follow_domain_order_lowest_ordinals_first_and_never_span_domains(
    replicas: int, count: int, policy: UpgradePolicySpec
) -> None:
    preview = plan_rollout(replicas=replicas, upgrade_domain_count=count, policy=policy)
    for batch in preview.batches:
        assert {upgrade_domain_of(o, count) for o in batch.ordinals} == {batch.upgrade_domain}
    domains = [batch.upgrade_domain for batch in preview.batches]
    assert domains == sorted(domains)
    # On a healthy fleet the walk is exactly the domains' instances, in order.
    walk = [o for batch in preview.batches for o in batch.ordinals]
    assert walk == [o for domain in spread(replicas, count) for o in domain]


@FAST
@given(replicas=fleet_sizes, count=domain_counts, policy=policies())
def test_no_batch_exceeds_the_size_rule_and_two_or_more_instances_are_never_all_down(
    replicas: int, count: int, policy: UpgradePolicySpec
) -> None:
    walk = count - 1 if policy.mode == UpgradeMode.MANUAL else None
    preview = plan_rollout(
        replicas=replicas, upgrade_domain_count=count, policy=policy, walk_upgrade_domain=walk
    )
    size = max(1, replicas * policy.rolling_upgrade.max_batch_instance_percent // 100)
    for batch in preview.batches:
        if policy.mode == UpgradeMode.AUTOMATIC:
            assert batch.upgrade_domain is None
            continue
        assert len(batch.ordinals) <= size
        if replicas >= 2:
            assert len(batch.ordinals) < replicas


@FAST
@given(
    replicas=fleet_sizes,
    count=domain_counts,
    walk=st.none() | st.integers(0, 19),
    policy=policies(("Manual",)),
)
def test_manual_mode_plans_nothing_past_walk_upgrade_domain(
    replicas: int, count: int, walk: int | None, policy: UpgradePolicySpec
) -> None:
    preview = plan_rollout(
        replicas=replicas, upgrade_domain_count=count, policy=policy, walk_upgrade_domain=walk
    )
    allowed = {o for o in range(replicas) if walk is not None and upgrade_domain_of(o, count) <= walk}
    assert {o for batch in preview.batches for o in batch.ordinals} == allowed
    if allowed != set(range(replicas)):
        assert preview.held_by is not None
        assert preview.held_by.reason is StepReason.WAITING_FOR_WALK


# --------------------------------------------------------------------------- health limits on any fleet


@st.composite
def fleets(draw: st.DrawFn) -> tuple[int, list[InstanceState]]:
    """A fleet in any state: on the old or the update revision, healthy, down, starting, missing."""
    replicas = draw(st.integers(1, 30))
    instances = []
    for ordinal in range(replicas):
        condition = draw(st.sampled_from(["healthy", "down", "missing", "terminating"]))
        revision = draw(st.sampled_from([OLD, NEW]))
        updated_at = T0 - timedelta(minutes=draw(st.integers(0, 90)))
        name = f"web-{ordinal}"
        if condition == "missing":
            instances.append(InstanceState.missing(name, ordinal))
            continue
        ready = condition == "healthy"
        instances.append(
            InstanceState(
                name,
                ordinal,
                revision,
                ready=ready,
                ready_since=updated_at if ready else None,
                updated_at=updated_at,
                terminating=condition == "terminating",
            )
        )
    return replicas, instances


def decide(
    replicas: int,
    instances: list[InstanceState],
    policy: UpgradePolicySpec,
    rollout: RolloutState,
    **kwargs: Any,
) -> Any:
    arguments: dict[str, Any] = {
        "replicas": replicas,
        "upgrade_domain_count": 5,
        "walk_upgrade_domain": None,
        "paused": False,
        "policy": policy,
        "update_revision": NEW,
        "instances": instances,
        "rollout": rollout,
        "now": T0,
    }
    arguments.update(kwargs)
    return next_step(**arguments)


def without_stabilization(policy: UpgradePolicySpec) -> UpgradePolicySpec:
    """The policy with Ready meaning healthy at once, so a test can tell health from the Ready flag."""
    health_check = policy.health_check.model_copy(update={"stabilization_period": "0s"})
    return policy.model_copy(update={"health_check": health_check})


@FAST
@given(fleet=fleets(), policy=policies(("Rolling", "Manual")), walk=st.none() | st.integers(0, 4))
def test_past_the_unhealthy_limit_no_healthy_instance_is_taken_down(
    fleet: tuple[int, list[InstanceState]], policy: UpgradePolicySpec, walk: int | None
) -> None:
    replicas, instances = fleet
    policy = without_stabilization(policy)
    step = decide(replicas, instances, policy, RolloutState(), walk_upgrade_domain=walk)
    healthy = {i.ordinal for i in instances if i.running and i.ready}
    limit = policy.rolling_upgrade.max_unhealthy_instance_percent
    if isinstance(step, StartBatch) and (replicas - len(healthy)) * 100 > limit * replicas:
        assert not set(step.batch.ordinals) & healthy
    if isinstance(step, Stop) and step.reason is StepReason.TOO_MANY_UNHEALTHY:
        assert (replicas - len(healthy)) * 100 > limit * replicas


@FAST
@given(fleet=fleets(), policy=policies(("Rolling",)))
def test_unhealthy_limits_stop_the_plan_where_the_policy_says(
    fleet: tuple[int, list[InstanceState]], policy: UpgradePolicySpec
) -> None:
    replicas, instances = fleet
    policy = without_stabilization(policy)
    step = decide(replicas, instances, policy, RolloutState())
    timeout = timedelta(seconds=policy.health_check.start_timeout_seconds)
    healthy = {i.ordinal for i in instances if i.running and i.ready}
    # Every instance of these fleets that exists has an update time.
    failed_upgraded = [
        i
        for i in instances
        if i.running
        and i.revision == NEW
        and i.ordinal not in healthy
        and (i.updated_at or T0) + timeout <= T0
    ]
    starting_upgraded = [
        i
        for i in instances
        if i.running and i.revision == NEW and i.ordinal not in healthy and i not in failed_upgraded
    ]
    outdated = [i for i in instances if i.running and i.revision != NEW]
    upgraded_limit = policy.rolling_upgrade.max_unhealthy_upgraded_instance_percent
    limit = policy.rolling_upgrade.max_unhealthy_instance_percent
    if len(failed_upgraded + starting_upgraded) * 100 > upgraded_limit * replicas:
        # Checked after each batch, over the instances on the update revision alone: a breach once every
        # one of them has had its start timeout, a wait while some are still starting.
        expected = (
            StepReason.INSTANCES_STARTING if starting_upgraded else StepReason.TOO_MANY_UNHEALTHY_UPGRADED
        )
        assert step.reason is expected
    elif outdated and (replicas - len(healthy)) * 100 > limit * replicas:
        outdated_down = [i for i in outdated if i.ordinal not in healthy]
        if outdated_down:
            assert isinstance(step, StartBatch)
            assert set(step.batch.ordinals) <= {i.ordinal for i in outdated_down}
        else:
            assert isinstance(step, Stop) and step.reason is StepReason.TOO_MANY_UNHEALTHY
    elif outdated:
        assert isinstance(step, StartBatch)


@FAST
@given(fleet=fleets(), policy=policies(("Rolling", "Manual", "Automatic")), data=st.data())
def test_no_new_batch_starts_while_a_recorded_batch_is_unhealthy(
    fleet: tuple[int, list[InstanceState]], policy: UpgradePolicySpec, data: st.DataObject
) -> None:
    replicas, instances = fleet
    domain = data.draw(st.integers(0, min(4, replicas - 1)))
    in_domain = [o for o in range(replicas) if upgrade_domain_of(o, 5) == domain]
    members = tuple(in_domain[: data.draw(st.integers(1, 3))])
    revision = data.draw(st.sampled_from([NEW, "web-previous"]))
    started_at = T0 - timedelta(minutes=data.draw(st.integers(0, 60)))
    rollout = RolloutState(Batch(domain, members), revision, started_at)
    step = decide(replicas, instances, policy, rollout, walk_upgrade_domain=4)

    gate = HealthGate.of(policy.health_check)
    by_ordinal = {i.ordinal: i for i in instances}
    unhealthy = [o for o in members if not gate.is_healthy(by_ordinal[o], T0)]
    # Under Proceed an instance past its start timeout no longer holds the batch; otherwise any does.
    proceed = policy.health_check.on_instance_start_timeout == "Proceed"
    holding = [o for o in unhealthy if not (proceed and gate.timed_out(by_ordinal[o], NEW, T0, started_at))]
    if isinstance(step, StartBatch) and holding:
        assert set(step.batch.ordinals) <= set(members)


# --------------------------------------------------------------------------- interleavings


events = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 20 * 60)),
    st.tuples(st.just("ready"), st.integers(0, 39)),
    st.tuples(st.just("break"), st.integers(0, 39)),
    st.tuples(st.just("heal"), st.integers(0, 39)),
    st.tuples(st.just("retarget"), st.sampled_from(["web-newer", "web-bad", NEW, OLD])),
    st.tuples(st.just("all-ready"), st.just(0)),
)


@settings(max_examples=120, deadline=None)
@given(
    replicas=st.integers(1, 40),
    count=st.integers(1, 6),
    policy=policies(("Rolling", "Manual")),
    walk=st.integers(0, 5),
    broken=st.sets(st.integers(0, 39), max_size=6),
    script=st.lists(events, min_size=1, max_size=60),
)
def test_interleavings_never_take_down_more_than_one_batch_beyond_the_unhealthy(
    replicas: int,
    count: int,
    policy: UpgradePolicySpec,
    walk: int,
    broken: set[int],
    script: list[tuple[str, Any]],
) -> None:
    sim = FleetSim(
        replicas, policy, upgrade_domain_count=count, walk_upgrade_domain=walk, bad_revisions={"web-bad"}
    )
    for ordinal in broken & set(range(replicas)):
        sim.break_instance(ordinal)
    size = batch_size(replicas, policy)
    strict = policy.health_check.on_instance_start_timeout != "Proceed"
    for event, value in script:
        if event == "tick":
            sim.advance(timedelta(seconds=value))
        elif event == "retarget":
            sim.update_revision = value
        elif event == "all-ready":
            for ordinal in range(replicas):
                sim.become_ready(ordinal)
        elif value < replicas:
            {"ready": sim.become_ready, "break": sim.break_instance, "heal": sim.heal}[event](value)
        sim.reconcile()
        assert len(sim.in_progress()) <= size
        if strict:
            # Without Proceed nothing moves past an instance that failed to start: every instance the
            # rollout took down, failed or not, belongs to the one batch in flight.
            assert len(sim.down_for_the_rollout()) <= size, sim.steps[-3:]
    for step in sim.started:
        assert len(step.batch.ordinals) <= size
        assert step.batch.upgrade_domain is not None
        assert step.batch.upgrade_domain <= walk or policy.mode == UpgradeMode.ROLLING
        assert {upgrade_domain_of(o, count) for o in step.batch.ordinals} == {step.batch.upgrade_domain}


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(1, 30),
    count=st.integers(1, 8),
    policy=policies(("Rolling", "Automatic")),
    data=st.data(),
)
def test_preview_and_controller_take_the_same_batches_whatever_the_timing(
    replicas: int, count: int, policy: UpgradePolicySpec, data: st.DataObject
) -> None:
    """The controller loop, with instances turning Ready in any order after any delay, walks the preview's
    batches: the preview can never promise an order the controller would not keep."""
    rolling = policy.rolling_upgrade.model_copy(update={"prioritize_unhealthy_instances": False})
    health_check = policy.health_check.model_copy(update={"instance_start_timeout": "1d"})
    policy = policy.model_copy(update={"rolling_upgrade": rolling, "health_check": health_check})
    sim = FleetSim(replicas, policy, upgrade_domain_count=count)
    for round_ in range(4 * replicas + 8):
        step = sim.reconcile()
        assert not isinstance(step, Stop), step
        if isinstance(step, Complete):
            break
        sim.advance(timedelta(seconds=data.draw(st.integers(1, 400), label="delay")))
        for ordinal in sorted(sim.down_for_the_rollout()):
            if round_ % 2 or data.draw(st.booleans(), label=f"web-{ordinal} turns Ready"):
                sim.become_ready(ordinal)
        # Every other round the whole batch is Ready and the clock reaches the end of the stabilisation
        # or pause the planner waits for, so every rollout gets to its end.
        waiting = sim.plan()
        if round_ % 2 and isinstance(waiting, Wait) and waiting.until is not None:
            sim.now = max(sim.now, waiting.until)
    else:
        raise AssertionError("the rollout did not complete")
    preview = plan_rollout(replicas=replicas, upgrade_domain_count=count, policy=policy)
    assert sim.batches() == preview.batches
