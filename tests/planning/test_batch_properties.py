"""Properties of the planner over generated fleets, policies and interleavings of health and template changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import event as note_event
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
    unhealthy_budget,
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


# --------------------------------------------------------------------------- the three limits, by a reference model

# The VM scale set API's RollingUpgradePolicy, sentence by sentence:
#   maxBatchInstancePercent: "The maximum percent of total virtual machine instances that will be upgraded
#     simultaneously by the rolling upgrade in one batch. As this is a maximum, unhealthy instances in
#     previous or future batches can cause the percentage of instances in a batch to decrease to ensure
#     higher reliability."
#   maxUnhealthyInstancePercent: "The maximum percentage of the total virtual machine instances in the scale
#     set that can be simultaneously unhealthy, either as a result of being upgraded, or by being found in an
#     unhealthy state by the virtual machine health checks before the rolling upgrade aborts. This
#     constraint will be checked prior to starting any batch."
#   maxUnhealthyUpgradedInstancePercent: "The maximum percentage of upgraded virtual machine instances that
#     can be found to be in an unhealthy state. This check will happen after each batch is upgraded."
#   prioritizeUnhealthyInstances: "Upgrade all unhealthy instances in a scale set before any healthy
#     instances."
# The model below is written from these sentences alone, not from the planner.

STATES = (
    "healthy",
    "unhealthy",
    "stabilizing",
    "upgraded",
    "starting",
    "timed-out",
    "missing",
    "terminating",
)


@st.composite
def any_policy(draw: st.DrawFn) -> UpgradePolicySpec:
    """Every limit anywhere in 0..100, even the combinations the API refuses: the planner must hold them all."""
    rolling = make_policy().rolling_upgrade.model_copy(
        update={
            "max_batch_instance_percent": draw(st.integers(0, 100)),
            "max_unhealthy_instance_percent": draw(st.integers(0, 100)),
            "max_unhealthy_upgraded_instance_percent": draw(st.integers(0, 100)),
            "prioritize_unhealthy_instances": draw(st.booleans()),
        }
    )
    health_check = make_policy().health_check.model_copy(
        update={"instance_start_timeout": "10m", "stabilization_period": "1m"}
    )
    return make_policy().model_copy(update={"rolling_upgrade": rolling, "health_check": health_check})


@st.composite
def large_fleets(draw: st.DrawFn) -> tuple[int, int, list[InstanceState]]:
    """1 to 1,000 instances in any mix of the STATES, over 1 to 20 upgrade domains."""
    replicas = draw(st.integers(1, 1000))
    domains = draw(st.integers(1, 20))
    weights = [draw(st.sampled_from([0, 0, 1, 3, 6]), label=f"weight of {state}") for state in STATES]
    if not any(weights):
        weights[0] = 1
    chance = draw(st.randoms(use_true_random=False))
    instances = []
    for ordinal in range(replicas):
        state = chance.choices(STATES, weights)[0]
        name = f"web-{ordinal}"
        long_ago, recently = T0 - timedelta(hours=2), T0 - timedelta(seconds=30)
        if state == "missing":
            instances.append(InstanceState.missing(name, ordinal))
            continue
        revision = NEW if state in ("upgraded", "starting", "timed-out") else OLD
        ready = state in ("healthy", "stabilizing", "upgraded")
        updated_at = recently if state == "starting" else long_ago
        ready_since = recently if state == "stabilizing" else (long_ago if ready else None)
        instances.append(
            InstanceState(
                name, ordinal, revision, ready, ready_since, updated_at, terminating=state == "terminating"
            )
        )
    return replicas, domains, instances


@dataclass(frozen=True)
class Expected:
    kind: type
    reason: StepReason | None = None
    ordinals: tuple[int, ...] = ()
    upgrade_domain: int | None = None


def reference(
    replicas: int, domains: int, instances: list[InstanceState], policy: UpgradePolicySpec
) -> Expected:
    """What the three limits say the next step is, for a Rolling upgrade with no batch in flight."""
    rolling = policy.rolling_upgrade
    stabilization = timedelta(minutes=1)
    timeout = timedelta(minutes=10)

    def healthy(i: InstanceState) -> bool:
        # Ready, and Ready for the stabilisation period since it was last put on its revision.
        if not (i.exists and not i.terminating and i.ready):
            return False
        since = max(t for t in (i.ready_since, i.updated_at) if t is not None)
        return since + stabilization <= T0

    by_ordinal = {i.ordinal: i for i in instances}
    fine = {o for o, i in by_ordinal.items() if healthy(i)}
    unhealthy = sorted(set(range(replicas)) - fine)

    # maxUnhealthyUpgradedInstancePercent: a share of the upgraded instances; an instance is "found"
    # unhealthy once its start timeout is over.
    upgraded = [o for o, i in by_ordinal.items() if i.exists and not i.terminating and i.revision == NEW]
    bad = [o for o in upgraded if o not in fine]
    found = [o for o in bad if (by_ordinal[o].updated_at or T0) + timeout <= T0]
    limit = rolling.max_unhealthy_upgraded_instance_percent
    if 100 * len(found) > limit * len(upgraded):
        return Expected(Stop, StepReason.TOO_MANY_UNHEALTHY_UPGRADED, tuple(bad))
    if 100 * len(bad) > limit * len(upgraded):
        return Expected(Wait, StepReason.INSTANCES_STARTING)

    outdated = [o for o, i in by_ordinal.items() if i.exists and not i.terminating and i.revision != NEW]
    if not outdated:
        return Expected(Complete)  # or a wait for instances still starting: not the limits' business

    # maxBatchInstancePercent: a maximum, at least one instance, and (this project's rule) never every
    # instance of a fleet of two or more; one upgrade domain per batch, in ascending order.
    most = max(1, replicas * rolling.max_batch_instance_percent // 100)
    if replicas > 1:
        most = min(most, replicas - 1)
    # maxUnhealthyInstancePercent: how many may be unhealthy at once (at least one, as a batch is);
    # the batch may take down only what the instances unhealthy already leave.
    budget = max(1, replicas * rolling.max_unhealthy_instance_percent // 100)
    room = budget - len(unhealthy)

    def rank(o: int) -> tuple[bool, int, int]:
        return (rolling.prioritize_unhealthy_instances and o in fine, o % domains, o)

    first = min(outdated, key=rank)
    batch: list[int] = []
    for o in sorted((o for o in outdated if rank(o)[:2] == rank(first)[:2]), key=rank)[:most]:
        if o in fine:
            if room <= 0:
                break
            room -= 1
        batch.append(o)
    if not batch:
        return Expected(Stop, StepReason.TOO_MANY_UNHEALTHY, tuple(unhealthy))
    return Expected(StartBatch, StepReason.BATCH_STARTED, tuple(sorted(batch)), first % domains)


@settings(max_examples=300, deadline=None)
@given(fleet=large_fleets(), policy=any_policy())
def test_the_planner_keeps_the_three_limits_as_the_reference_model_reads_them(
    fleet: tuple[int, int, list[InstanceState]], policy: UpgradePolicySpec
) -> None:
    replicas, domains, instances = fleet
    step = decide(replicas, instances, policy, RolloutState(), upgrade_domain_count=domains)
    expected = reference(replicas, domains, instances, policy)
    if expected.kind is Complete:
        assert isinstance(step, Complete | Wait), step
        return
    assert isinstance(step, expected.kind), (step, expected)
    assert step.reason is expected.reason
    if isinstance(step, Stop):
        assert step.ordinals == expected.ordinals
    if isinstance(step, StartBatch):
        assert step.batch == Batch(expected.upgrade_domain, expected.ordinals)
        note_event("shrunk" if step.shrunk_because else "full")
    note_event(f"{expected.kind.__name__} {expected.reason}")


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
    budget = unhealthy_budget(replicas, policy)
    for unhealthy, taken in sim.taken_down:
        # Whatever broke by itself, a batch takes a healthy instance down only into room left in the budget.
        assert taken == 0 or unhealthy + taken <= budget, sim.taken_down
    for step in sim.started:
        assert len(step.batch.ordinals) <= size
        assert step.batch.upgrade_domain is not None
        assert step.batch.upgrade_domain <= walk or policy.mode == UpgradeMode.ROLLING
        assert {upgrade_domain_of(o, count) for o in step.batch.ordinals} == {step.batch.upgrade_domain}


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(1, 1000),
    count=st.integers(1, 20),
    policy=any_policy(),
    mode=st.sampled_from(["Rolling", "Manual"]),
    on_timeout=st.sampled_from(["Proceed", "Pause", "Rollback"]),
    broken=st.sampled_from([0, 1, 5, 20]),
    failing=st.sampled_from([0, 0, 1, 5, 20]),
    data=st.data(),
)
def test_whole_rollouts_never_have_more_instances_down_than_the_budget(
    replicas: int,
    count: int,
    policy: UpgradePolicySpec,
    mode: str,
    on_timeout: str,
    broken: int,
    failing: int,
    data: st.DataObject,
) -> None:
    """A rollout driven to its end (complete or stopped) over 1 to 1,000 instances, with some already
    unhealthy of their own accord (they may heal) and some that never start on the new revision: the
    instances unhealthy at any moment are never more than the budget, or than those already down; and
    a batch takes a healthy instance down only into room the budget has left."""
    health_check = policy.health_check.model_copy(update={"on_instance_start_timeout": on_timeout})
    policy = policy.model_copy(update={"mode": UpgradeMode(mode), "health_check": health_check})
    chance = data.draw(st.randoms(use_true_random=False), label="chance")
    sim = FleetSim(replicas, policy, upgrade_domain_count=count, walk_upgrade_domain=19)
    for ordinal in range(replicas):
        if chance.randrange(100) < broken:
            sim.break_instance(ordinal)
    never_start = {o for o in range(replicas) if chance.randrange(100) < failing}
    budget = unhealthy_budget(replicas, policy)
    ceiling = max(budget, len(sim.unhealthy()))
    for _ in range(150):  # a whole rollout, or its first 150 passes when its batches are small
        step = sim.reconcile()
        assert len(sim.unhealthy()) <= ceiling, sim.steps[-2:]
        if isinstance(step, Complete | Stop):
            break
        sim.advance(timedelta(seconds=chance.choice([5, 30, *[60] * 8, 11 * 60])))
        for ordinal in sorted(sim.unhealthy()):
            if ordinal in sim.broken and chance.random() < 0.2:
                sim.heal(ordinal)
            elif ordinal not in never_start and ordinal not in sim.broken and chance.random() < 0.9:
                sim.become_ready(ordinal)
        # An instance that heals by itself leaves room the rollout may use, never more.
        ceiling = max(budget, len(sim.unhealthy()))
    for unhealthy, taken in sim.taken_down:
        assert taken == 0 or unhealthy + taken <= budget, sim.taken_down
    note_event(f"ended {type(sim.steps[-1]).__name__} {getattr(sim.steps[-1], 'reason', '')}")
    note_event("shrunk a batch" if any(s.shrunk_because for s in sim.started) else "no batch shrunk")


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
