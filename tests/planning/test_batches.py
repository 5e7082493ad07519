"""The batch planner, rule by rule and knob by knob of UpgradePolicy."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from rollout_sim import NEW, OLD, T0, FleetSim, healthy_fleet, make_policy

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.planning.batches import (
    Complete,
    StartBatch,
    Step,
    StepReason,
    Stop,
    Wait,
    batch_size,
    next_step,
)
from scaleset_operator.planning.instances import Batch, InstanceState, RolloutState
from scaleset_operator.planning.updates import automatic_work_policy

DEFAULT = UpgradePolicySpec()


def plan(
    instances: list[InstanceState],
    *,
    replicas: int | None = None,
    upgrade_domain_count: int = 5,
    walk_upgrade_domain: int | None = None,
    paused: bool = False,
    policy: UpgradePolicySpec = DEFAULT,
    rollout: RolloutState | None = None,
    now: datetime = T0,
    update_revision: str = NEW,
) -> Step:
    return next_step(
        replicas=len(instances) if replicas is None else replicas,
        upgrade_domain_count=upgrade_domain_count,
        walk_upgrade_domain=walk_upgrade_domain,
        paused=paused,
        policy=policy,
        update_revision=update_revision,
        instances=instances,
        rollout=rollout or RolloutState(),
        now=now,
    )


def updated(
    instance: InstanceState,
    at: datetime,
    *,
    ready: bool = True,
    ready_since: datetime | None = None,
    revision: str = NEW,
) -> InstanceState:
    return replace(
        instance,
        revision=revision,
        updated_at=at,
        ready=ready,
        ready_since=(ready_since or at) if ready else None,
    )


def down(instance: InstanceState) -> InstanceState:
    return replace(instance, ready=False, ready_since=None)


def started(step: Step) -> Batch:
    assert isinstance(step, StartBatch), step
    return step.batch


# --------------------------------------------------------------------------- batch size


@pytest.mark.parametrize(
    ("replicas", "percent", "size"),
    [(14, 20, 2), (10, 20, 2), (3, 20, 1), (1, 20, 1), (100, 35, 35), (2, 100, 1), (5, 100, 4)],
)
def test_batch_size_is_the_percent_of_the_fleet_rounded_down_at_least_one_and_never_all(
    replicas: int, percent: int, size: int
) -> None:
    policy = make_policy(
        rollingUpgrade={"maxBatchInstancePercent": percent, "maxUnhealthyInstancePercent": 100}
    )
    assert batch_size(replicas, policy) == size


def test_automatic_mode_batch_is_the_whole_fleet() -> None:
    assert batch_size(7, make_policy(mode="Automatic")) == 7


def test_default_policy_starts_with_twenty_percent_of_the_fleet_from_the_first_domain() -> None:
    assert started(plan(healthy_fleet(14))) == Batch(0, (0, 5))


def test_batch_never_spans_two_domains() -> None:
    # A 20 % batch of 14 is two instances; domain 0 holds 0, 5 and 10, so the second batch is 10 alone.
    fleet = healthy_fleet(14)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=5))
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=5))
    assert started(plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0))) == Batch(0, (10,))


def test_domains_are_walked_in_ascending_order_lowest_ordinals_first() -> None:
    fleet = healthy_fleet(14)
    for ordinal in (0, 5, 10):
        fleet[ordinal] = updated(fleet[ordinal], T0 - timedelta(minutes=5))
    assert started(plan(fleet)) == Batch(1, (1, 6))


def test_with_a_hundred_percent_every_batch_is_one_whole_domain() -> None:
    policy = make_policy(rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100})
    sim = FleetSim(14, policy)
    for _ in range(6):
        sim.reconcile()
        for ordinal in sim.instances:
            sim.become_ready(ordinal)
    assert [batch.ordinals for batch in sim.batches()] == [
        (0, 5, 10),
        (1, 6, 11),
        (2, 7, 12),
        (3, 8, 13),
        (4, 9),
    ]


def test_two_instance_fleet_in_one_domain_keeps_one_serving() -> None:
    policy = make_policy(rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100})
    assert started(plan(healthy_fleet(2), upgrade_domain_count=1, policy=policy)) == Batch(0, (0,))


def test_single_instance_scaleset_is_upgraded_with_downtime() -> None:
    step = plan(healthy_fleet(1), policy=make_policy(rollingUpgrade={"maxUnhealthyInstancePercent": 100}))
    assert isinstance(step, StartBatch)
    assert step.batch == Batch(0, (0,))
    assert step.downtime


def test_surge_spares_a_single_instance_scaleset_the_downtime() -> None:
    policy = make_policy(rollingUpgrade={"maxSurge": True, "maxUnhealthyInstancePercent": 100})
    step = plan(healthy_fleet(1), policy=policy)
    assert isinstance(step, StartBatch)
    assert step.surge
    assert not step.downtime


def test_surge_flag_follows_the_policy() -> None:
    with_surge = plan(healthy_fleet(10), policy=make_policy(rollingUpgrade={"maxSurge": True}))
    without = plan(healthy_fleet(10))
    assert isinstance(with_surge, StartBatch) and with_surge.surge
    assert isinstance(without, StartBatch) and not without.surge and not without.downtime


# --------------------------------------------------------------------------- the batch in flight


def test_second_domain_waits_for_first_to_be_healthy() -> None:
    policy = make_policy(rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100})
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=1))
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=1), ready=False)
    step = plan(fleet, policy=policy, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=1)))
    assert isinstance(step, Wait)
    assert step.reason is StepReason.BATCH_IN_PROGRESS
    assert "web-5" in step.message and "web-0" not in step.message


def test_next_batch_starts_once_the_previous_one_is_healthy() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=2), ready_since=T0 - timedelta(minutes=1))
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=2), ready_since=T0 - timedelta(minutes=1))
    step = plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=2)))
    assert started(step) == Batch(1, (1, 6))


def test_waiting_batch_wakes_at_its_start_deadline() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=10), ready=False)
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=4), ready=False)
    step = plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=10)))
    assert isinstance(step, Wait)
    assert step.until == T0 + timedelta(minutes=20)


def test_ready_instance_counts_as_healthy_only_after_the_stabilization_period() -> None:
    policy = make_policy(healthCheck={"stabilizationPeriod": "2m"})
    fleet = healthy_fleet(10)
    for ordinal in (0, 5):
        fleet[ordinal] = updated(
            fleet[ordinal], T0 - timedelta(minutes=3), ready_since=T0 - timedelta(minutes=1)
        )
    rollout = RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=3))
    step = plan(fleet, policy=policy, rollout=rollout)
    assert isinstance(step, Wait)
    assert step.until == T0 + timedelta(minutes=1)
    assert started(plan(fleet, policy=policy, rollout=rollout, now=T0 + timedelta(minutes=1))) == Batch(
        1, (1, 6)
    )


def test_ready_condition_from_before_an_in_place_update_does_not_count() -> None:
    # The pod still shows the Ready=True it had on the old image: health is measured from the update.
    policy = make_policy(healthCheck={"stabilizationPeriod": "30s"})
    fleet = healthy_fleet(10)
    for ordinal in (0, 5):
        fleet[ordinal] = replace(fleet[ordinal], revision=NEW, updated_at=T0)
    step = plan(fleet, policy=policy, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0))
    assert isinstance(step, Wait)
    assert step.until == T0 + timedelta(seconds=30)


def test_healthy_member_left_unpatched_waits_for_a_later_batch() -> None:
    # The operator stopped between updating web-0 and web-5: web-5 is simply outdated again.
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0, ready=False)
    rollout = RolloutState(Batch(0, (0, 5)), NEW, T0)
    step = plan(fleet, rollout=rollout)
    assert isinstance(step, Wait)
    assert step.reason is StepReason.BATCH_IN_PROGRESS
    fleet[0] = updated(fleet[0], T0)
    assert started(plan(fleet, rollout=rollout, now=T0 + timedelta(minutes=1))) == Batch(0, (5,))


def test_down_member_left_unpatched_is_resumed_at_once() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0, ready=False)
    fleet[5] = down(fleet[5])
    step = plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0))
    assert isinstance(step, StartBatch)
    assert step.reason is StepReason.BATCH_RESUMED
    # web-0, still starting, stays in the record so that no other batch starts before it is healthy.
    assert step.batch == Batch(0, (0, 5))


def test_paused_scaleset_starts_no_batch() -> None:
    step = plan(healthy_fleet(10), paused=True)
    assert isinstance(step, Wait)
    assert step.reason is StepReason.PAUSED


def test_paused_scaleset_lets_the_running_batch_finish() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0, ready=False)
    fleet[5] = updated(fleet[5], T0, ready=False)
    rollout = RolloutState(Batch(0, (0, 5)), NEW, T0)
    step = plan(fleet, paused=True, rollout=rollout)
    assert isinstance(step, Wait)
    assert step.reason is StepReason.BATCH_IN_PROGRESS
    fleet[0] = updated(fleet[0], T0)
    fleet[5] = updated(fleet[5], T0)
    step = plan(fleet, paused=True, rollout=rollout, now=T0 + timedelta(minutes=1))
    assert isinstance(step, Wait)
    assert step.reason is StepReason.PAUSED


def test_terminating_member_of_the_batch_is_waited_for() -> None:
    # A reimage deletes the pod; the controller creates it again at the update revision.
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0)
    fleet[5] = replace(fleet[5], terminating=True, ready=False)
    step = plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0), now=T0 + timedelta(minutes=1))
    assert isinstance(step, Wait)
    assert step.reason is StepReason.BATCH_IN_PROGRESS
    assert step.until == T0 + timedelta(minutes=30)


def test_missing_member_of_the_batch_times_out_from_the_batch_start() -> None:
    policy = make_policy(healthCheck={"onInstanceStartTimeout": "Pause"})
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0)
    fleet[5] = InstanceState.missing("web-5", 5)
    rollout = RolloutState(Batch(0, (0, 5)), NEW, T0)
    step = plan(fleet, policy=policy, rollout=rollout, now=T0 + timedelta(minutes=31))
    assert isinstance(step, Stop)
    assert step.reason is StepReason.INSTANCE_START_TIMEOUT
    assert step.ordinals == (5,)


# --------------------------------------------------------------------------- pause between batches


def test_pause_between_batches_counts_from_when_the_batch_became_healthy() -> None:
    policy = make_policy(rollingUpgrade={"pauseTimeBetweenBatches": "5m"})
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=4), ready_since=T0 - timedelta(minutes=3))
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=4), ready_since=T0 - timedelta(minutes=2))
    rollout = RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=4))
    step = plan(fleet, policy=policy, rollout=rollout)
    assert isinstance(step, Wait)
    assert step.reason is StepReason.PAUSE_BETWEEN_BATCHES
    assert step.until == T0 + timedelta(minutes=3)
    assert started(plan(fleet, policy=policy, rollout=rollout, now=T0 + timedelta(minutes=3))) == Batch(
        1, (1, 6)
    )


def test_pause_does_not_delay_the_first_batch() -> None:
    policy = make_policy(rollingUpgrade={"pauseTimeBetweenBatches": "1h"})
    # The batch recorded is the last one of an earlier rollout, to another revision.
    rollout = RolloutState(Batch(4, (4, 9)), "web-older", T0 - timedelta(minutes=1))
    assert started(plan(healthy_fleet(10), policy=policy, rollout=rollout)) == Batch(0, (0, 5))


# --------------------------------------------------------------------------- health limits


def fleet_with_failed_updates(*ordinals: int) -> list[InstanceState]:
    """Ten instances, those named failed long ago on the update revision (so they are not outdated)."""
    fleet = healthy_fleet(10)
    for ordinal in ordinals:
        fleet[ordinal] = updated(fleet[ordinal], T0 - timedelta(hours=2), ready=False)
    return fleet


TOLERANT_OF_FAILED_UPDATES = make_policy(rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 100})


def test_too_many_unhealthy_instances_stop_the_rollout_before_a_batch() -> None:
    step = plan(fleet_with_failed_updates(3, 7, 8), policy=TOLERANT_OF_FAILED_UPDATES)
    assert isinstance(step, Stop)
    assert step.reason is StepReason.TOO_MANY_UNHEALTHY
    assert step.ordinals == (3, 7, 8)
    assert "maxUnhealthyInstancePercent" in step.message


def test_past_the_unhealthy_limit_no_batch_starts_even_where_instances_are_down_already() -> None:
    # 3 of 10 down is past the budget of 2 (20 %): the next batch in order, web-0 and web-5, would take
    # healthy instances down, and without prioritizeUnhealthyInstances the down ones wait their turn.
    fleet = healthy_fleet(10)
    for ordinal in (3, 7, 8):
        fleet[ordinal] = down(fleet[ordinal])
    step = plan(fleet)
    assert isinstance(step, Stop)
    assert step.reason is StepReason.TOO_MANY_UNHEALTHY
    assert step.ordinals == (3, 7, 8)


def test_unhealthy_instances_filling_the_budget_stop_the_rollout_before_a_batch() -> None:
    # maxUnhealthyInstancePercent 20 % of 10 is 2 instances at once; web-3 and web-7 use both, so the
    # next batch has no room for even one instance.
    fleet = healthy_fleet(10)
    fleet[3] = down(fleet[3])
    fleet[7] = down(fleet[7])
    step = plan(fleet)
    assert isinstance(step, Stop)
    assert step.reason is StepReason.TOO_MANY_UNHEALTHY
    assert step.ordinals == (3, 7)
    assert "maxUnhealthyInstancePercent (20 %)" in step.message
    assert "web-3, web-7" in step.message and "web-0" in step.message


def test_one_unhealthy_instance_shrinks_the_next_batch_to_one() -> None:
    # Two may be unhealthy at once; web-7 is one, so the batch of two (20 %) shrinks to web-0 alone.
    fleet = healthy_fleet(10)
    fleet[7] = down(fleet[7])
    step = plan(fleet)
    assert isinstance(step, StartBatch)
    assert step.batch == Batch(0, (0,))
    assert "1 of 2" in step.shrunk_because and "web-7" in step.shrunk_because
    assert step.shrunk_because in step.message


def test_a_batch_of_healthy_instances_is_not_called_shrunk() -> None:
    step = plan(healthy_fleet(14), rollout=RolloutState())
    assert isinstance(step, StartBatch) and step.shrunk_because == ""


def test_a_fleet_too_small_for_the_percent_still_takes_one_instance_at_a_time() -> None:
    # 20 % of 4 rounds down to 0; a batch is never smaller than one instance, and one is the budget.
    assert started(plan(healthy_fleet(4))) == Batch(0, (0,))
    fleet = healthy_fleet(4)
    fleet[2] = down(fleet[2])
    step = plan(fleet)
    assert isinstance(step, Stop) and step.reason is StepReason.TOO_MANY_UNHEALTHY


def test_an_unhealthy_instance_in_the_next_batch_costs_nothing() -> None:
    # web-5 is down already: updating it takes nothing more down, so the batch web-0, web-5 fits in
    # the one instance of room that web-5 leaves.
    fleet = healthy_fleet(10)
    fleet[5] = down(fleet[5])
    step = plan(fleet)
    assert isinstance(step, StartBatch)
    assert step.batch == Batch(0, (0, 5))
    assert step.shrunk_because == ""


def test_missing_instances_count_as_unhealthy_for_the_limit() -> None:
    fleet = healthy_fleet(10)[:7]  # web-7, web-8 and web-9 have no pod
    step = plan(fleet, replicas=10)
    assert isinstance(step, Stop)
    assert step.reason is StepReason.TOO_MANY_UNHEALTHY
    assert step.ordinals == (7, 8, 9)


def test_missing_instances_are_left_to_the_controller_to_create() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = InstanceState.missing("web-0", 0)
    assert started(plan(fleet)) == Batch(0, (5,))


def test_stop_lifts_when_health_recovers() -> None:
    assert isinstance(plan(fleet_with_failed_updates(3, 7, 8), policy=TOLERANT_OF_FAILED_UPDATES), Stop)
    assert isinstance(plan(fleet_with_failed_updates(3, 7), policy=TOLERANT_OF_FAILED_UPDATES), Stop)
    assert started(plan(fleet_with_failed_updates(3), policy=TOLERANT_OF_FAILED_UPDATES)) == Batch(0, (0,))


def test_too_many_unhealthy_upgraded_instances_stop_the_rollout_after_a_batch() -> None:
    policy = make_policy(rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 0})
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(hours=1), ready=False)
    fleet[5] = updated(fleet[5], T0 - timedelta(hours=1))
    step = plan(fleet, policy=policy, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(hours=1)))
    assert isinstance(step, Stop)
    assert step.reason is StepReason.TOO_MANY_UNHEALTHY_UPGRADED
    assert step.ordinals == (0,)


def test_unhealthy_instances_on_the_old_revision_do_not_count_against_the_upgraded_limit() -> None:
    policy = make_policy(rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 0})
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=5))
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=5))
    fleet[9] = down(fleet[9])
    step = plan(fleet, policy=policy, rollout=RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=5)))
    # Not a breach; web-9 does use one of the two instances maxUnhealthyInstancePercent allows down.
    assert started(step) == Batch(1, (1,))


def updated_domains(fleet: list[InstanceState], failed: set[int], *ordinals: int) -> list[InstanceState]:
    for ordinal in ordinals:
        fleet[ordinal] = updated(fleet[ordinal], T0 - timedelta(hours=1), ready=ordinal not in failed)
    return fleet


def test_upgraded_limit_is_a_share_of_the_upgraded_instances_not_of_all_replicas() -> None:
    # Five of ten on the update revision: one failed is 20 % of them (at the limit), two are 40 %
    # (past it), although two are only 20 % of all ten instances.
    policy = make_policy(rollingUpgrade={"maxUnhealthyInstancePercent": 50})
    rollout = RolloutState(Batch(2, (2,)), NEW, T0 - timedelta(hours=1))
    within = plan(updated_domains(healthy_fleet(10), {6}, 0, 5, 1, 6, 2), policy=policy, rollout=rollout)
    assert isinstance(within, StartBatch)
    breach = plan(updated_domains(healthy_fleet(10), {5, 6}, 0, 5, 1, 6, 2), policy=policy, rollout=rollout)
    assert isinstance(breach, Stop)
    assert breach.reason is StepReason.TOO_MANY_UNHEALTHY_UPGRADED
    assert breach.ordinals == (5, 6)
    assert "2 of the 5 instances on web-new" in breach.message


def test_defaults_and_a_never_ready_image_stop_ten_instances_after_the_first_batch() -> None:
    # maxUnhealthyUpgradedInstancePercent 20 % of the two upgraded instances: both failing is 100 %.
    sim = FleetSim(10, DEFAULT, bad_revisions={NEW})
    assert isinstance(sim.reconcile(), Wait)
    sim.advance(timedelta(minutes=30))
    step = sim.reconcile()
    assert isinstance(step, Stop)
    assert step.reason is StepReason.TOO_MANY_UNHEALTHY_UPGRADED
    assert sim.batches() == [Batch(0, (0, 5))]
    assert {o for o, i in sim.instances.items() if i.revision == NEW} == {0, 5}


def test_a_breach_waits_while_it_rests_on_instances_still_starting() -> None:
    # web-0 failed (past its timeout) and web-5 is still starting: 1 of 2 failed already breaches 20 %.
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(hours=1), ready=False)
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=1), ready=False)
    step = plan(fleet)
    assert isinstance(step, Stop) and step.ordinals == (0, 5)
    # With a 50 % limit one failed of two is within it, and web-5 may yet come up: wait for it.
    policy = make_policy(rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 50})
    step = plan(fleet, policy=policy)
    assert isinstance(step, Wait) and step.reason is StepReason.INSTANCES_STARTING
    assert step.until == T0 + timedelta(minutes=29)


def test_upgraded_instances_still_starting_are_waited_for_before_a_breach_is_declared() -> None:
    # web-3 came up at the update revision (a scale-up); it has had two minutes of its thirty.
    policy = make_policy(rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 0})
    fleet = healthy_fleet(10)
    fleet[3] = updated(fleet[3], T0 - timedelta(minutes=2), ready=False)
    step = plan(fleet, policy=policy)
    assert isinstance(step, Wait)
    assert step.reason is StepReason.INSTANCES_STARTING
    assert step.until == T0 + timedelta(minutes=28)


# --------------------------------------------------------------------------- instance start timeout


def timed_out_batch() -> tuple[list[InstanceState], RolloutState]:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=31))
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=31), ready=False)
    return fleet, RolloutState(Batch(0, (0, 5)), NEW, T0 - timedelta(minutes=31))


def test_instance_start_timeout_with_pause_stops_the_rollout() -> None:
    fleet, rollout = timed_out_batch()
    step = plan(fleet, policy=make_policy(healthCheck={"onInstanceStartTimeout": "Pause"}), rollout=rollout)
    assert isinstance(step, Stop)
    assert step.reason is StepReason.INSTANCE_START_TIMEOUT
    assert step.ordinals == (5,)
    assert "web-5" in step.message


def test_instance_start_timeout_with_rollback_asks_for_a_rollback() -> None:
    fleet, rollout = timed_out_batch()
    step = plan(
        fleet, policy=make_policy(healthCheck={"onInstanceStartTimeout": "Rollback"}), rollout=rollout
    )
    assert isinstance(step, Stop)
    assert step.reason is StepReason.ROLLBACK_REQUIRED
    assert step.ordinals == (5,)


def test_instance_start_timeout_with_proceed_lets_the_next_batch_start_within_the_limits() -> None:
    # web-5 failed: 1 of the 2 upgraded (50 %) is within a 50 % upgraded limit, and being down it
    # leaves room for one instance of the next batch under maxUnhealthyInstancePercent (2 of 10).
    fleet, rollout = timed_out_batch()
    policy = make_policy(
        healthCheck={"onInstanceStartTimeout": "Proceed"},
        rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 50},
    )
    assert started(plan(fleet, policy=policy, rollout=rollout)) == Batch(1, (1,))


def test_instance_start_timeout_with_proceed_still_answers_to_the_upgraded_limit() -> None:
    fleet, rollout = timed_out_batch()
    step = plan(fleet, policy=make_policy(healthCheck={"onInstanceStartTimeout": "Proceed"}), rollout=rollout)
    assert isinstance(step, Stop) and step.reason is StepReason.TOO_MANY_UNHEALTHY_UPGRADED


def test_instance_start_timeout_follows_the_policy_duration() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=6), ready=False)
    rollout = RolloutState(Batch(0, (0,)), NEW, T0 - timedelta(minutes=6))
    policy = make_policy(healthCheck={"instanceStartTimeout": "5m", "onInstanceStartTimeout": "Pause"})
    step = plan(fleet, policy=policy, rollout=rollout)
    assert isinstance(step, Stop)
    assert step.reason is StepReason.INSTANCE_START_TIMEOUT


# --------------------------------------------------------------------------- prioritizeUnhealthyInstances


def test_prioritize_unhealthy_instances_upgrades_them_first() -> None:
    policy = make_policy(rollingUpgrade={"prioritizeUnhealthyInstances": True})
    fleet = healthy_fleet(10)
    fleet[7] = down(fleet[7])
    assert started(plan(fleet, policy=policy)) == Batch(2, (7,))


def test_unhealthy_instances_wait_their_turn_without_prioritizing() -> None:
    fleet = healthy_fleet(10)
    fleet[7] = down(fleet[7])
    assert started(plan(fleet)) == Batch(0, (0,))  # and web-7 shrinks the batch


def test_prioritized_unhealthy_instances_go_although_they_fill_the_budget() -> None:
    # Three down of ten, past the budget of two: they are down already and cost nothing to update, so
    # with prioritizeUnhealthyInstances they go (domain 2 first), while no healthy instance may.
    policy = make_policy(rollingUpgrade={"prioritizeUnhealthyInstances": True})
    fleet = healthy_fleet(10)
    for ordinal in (3, 7, 8):
        fleet[ordinal] = down(fleet[ordinal])
    assert started(plan(fleet, policy=policy)) == Batch(2, (7,))


def test_prioritized_unhealthy_instances_go_domain_by_domain() -> None:
    policy = make_policy(
        rollingUpgrade={"prioritizeUnhealthyInstances": True, "maxUnhealthyInstancePercent": 50}
    )
    fleet = healthy_fleet(10)
    for ordinal in (8, 6, 1):
        fleet[ordinal] = down(fleet[ordinal])
    assert started(plan(fleet, policy=policy)) == Batch(1, (1, 6))


def test_healthy_instances_follow_once_the_unhealthy_ones_are_updated() -> None:
    policy = make_policy(rollingUpgrade={"prioritizeUnhealthyInstances": True})
    fleet = healthy_fleet(10)
    fleet[7] = updated(fleet[7], T0 - timedelta(minutes=5))
    assert started(plan(fleet, policy=policy, rollout=RolloutState(Batch(2, (7,)), NEW, T0))) == Batch(
        0, (0, 5)
    )


# --------------------------------------------------------------------------- modes


def test_automatic_mode_updates_every_outdated_instance_at_once() -> None:
    fleet = healthy_fleet(7)
    fleet[2] = updated(fleet[2], T0 - timedelta(minutes=5))
    step = plan(fleet, policy=make_policy(mode="Automatic"))
    assert isinstance(step, StartBatch)
    assert step.batch == Batch(None, (0, 1, 3, 4, 5, 6))


def test_automatic_mode_is_not_gated_by_unhealthy_instances() -> None:
    fleet = [down(i) for i in healthy_fleet(4)]
    assert started(plan(fleet, policy=make_policy(mode="Automatic"))) == Batch(None, (0, 1, 2, 3))


@pytest.mark.parametrize("mode", ["Automatic", "Rolling", "Manual"])
def test_automatic_work_goes_in_batches_of_at_most_twenty_percent_whatever_the_mode(mode: str) -> None:
    # "No more than 20% of the scale set upgrading at any time": 2 of 10, one upgrade domain at a time,
    # also in Automatic mode, whose all-at-once batch is for a change of the user's template.
    policy = make_policy(
        mode=mode, rollingUpgrade={"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}
    )
    automatic = automatic_work_policy(policy)
    assert automatic.rolling_upgrade.max_batch_instance_percent == 20
    assert automatic.mode == ("Rolling" if mode == "Automatic" else mode)
    assert started(plan(healthy_fleet(10), policy=automatic, walk_upgrade_domain=4)) == Batch(0, (0, 5))
    assert batch_size(1, automatic) == 1


def test_manual_mode_without_walk_moves_nothing() -> None:
    step = plan(healthy_fleet(10), policy=make_policy(mode="Manual"))
    assert isinstance(step, Wait)
    assert step.reason is StepReason.WAITING_FOR_WALK
    assert step.until is None


def test_manual_mode_updates_domains_up_to_walk_upgrade_domain() -> None:
    policy = make_policy(mode="Manual", rollingUpgrade={"maxBatchInstancePercent": 20})
    sim = FleetSim(10, policy, walk_upgrade_domain=1)
    for _ in range(5):
        sim.reconcile()
        for ordinal in sim.instances:
            sim.become_ready(ordinal)
    assert sim.batches() == [Batch(0, (0, 5)), Batch(1, (1, 6))]
    step = sim.reconcile()
    assert isinstance(step, Wait)
    assert step.reason is StepReason.WAITING_FOR_WALK
    assert "upgrade domain 2 waits" in step.message


def test_manual_walk_beyond_the_last_domain_allows_every_domain() -> None:
    fleet = healthy_fleet(5)
    for ordinal in range(4):
        fleet[ordinal] = updated(fleet[ordinal], T0 - timedelta(minutes=5))
    assert started(plan(fleet, policy=make_policy(mode="Manual"), walk_upgrade_domain=19)) == Batch(4, (4,))


# --------------------------------------------------------------------------- re-targeting


def test_retarget_moves_down_instances_of_the_running_batch_to_the_newest_revision() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=1), ready=False, revision="web-broken")
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=1), revision="web-broken")
    step = plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), "web-broken", T0 - timedelta(minutes=1)))
    assert isinstance(step, StartBatch)
    assert step.reason is StepReason.BATCH_RETARGETED
    assert step.batch == Batch(0, (0,))


def test_retarget_leaves_healthy_instances_of_the_running_batch_for_later() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0 - timedelta(minutes=10), revision="web-mid")
    fleet[5] = updated(fleet[5], T0 - timedelta(minutes=10), revision="web-mid")
    step = plan(fleet, rollout=RolloutState(Batch(0, (0, 5)), "web-mid", T0 - timedelta(minutes=10)))
    assert started(step) == Batch(0, (0, 5))
    assert isinstance(step, StartBatch) and step.reason is StepReason.BATCH_STARTED


def test_paused_scaleset_does_not_retarget() -> None:
    fleet = healthy_fleet(10)
    fleet[0] = updated(fleet[0], T0, ready=False, revision="web-broken")
    step = plan(fleet, paused=True, rollout=RolloutState(Batch(0, (0,)), "web-broken", T0))
    assert isinstance(step, Wait)
    assert step.reason is StepReason.PAUSED


# --------------------------------------------------------------------------- completion


def test_complete_when_every_instance_is_updated_and_healthy() -> None:
    fleet = healthy_fleet(4, revision=NEW)
    assert isinstance(
        plan(fleet, rollout=RolloutState(Batch(3, (3,)), NEW, T0 - timedelta(hours=2))), Complete
    )


def test_empty_scaleset_is_complete() -> None:
    assert isinstance(plan([], replicas=0), Complete)


def test_instances_being_created_at_the_update_revision_are_waited_for() -> None:
    fleet = healthy_fleet(4, revision=NEW)
    fleet[3] = updated(fleet[3], T0 - timedelta(minutes=1), ready=False)
    step = plan(fleet)
    assert isinstance(step, Wait)
    assert step.reason is StepReason.INSTANCES_STARTING


def test_instance_failing_long_after_its_update_does_not_hold_completion() -> None:
    fleet = healthy_fleet(10, revision=NEW)
    fleet[3] = down(fleet[3])
    assert isinstance(plan(fleet), Complete)


def test_instances_beyond_replicas_take_no_part() -> None:
    fleet = healthy_fleet(6)
    assert started(plan(fleet, replicas=5, upgrade_domain_count=1)) == Batch(0, (0,))
    fleet = [*healthy_fleet(5, revision=NEW), InstanceState("web-5", 5, OLD, ready=False)]
    assert isinstance(plan(fleet, replicas=5), Complete)


@pytest.mark.parametrize(
    "step_kwargs",
    [{"paused": True}, {"policy": make_policy(mode="Manual")}],
)
def test_reasons_come_with_a_message(step_kwargs: dict[str, Any]) -> None:
    step = plan(healthy_fleet(10), **step_kwargs)
    assert isinstance(step, Wait)
    assert step.message
