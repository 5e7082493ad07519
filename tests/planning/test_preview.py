"""The static preview: the planner's own answers on a simulated healthy fleet."""

from __future__ import annotations

from datetime import timedelta

from rollout_sim import make_policy

from scaleset_operator.api.models import UpgradePolicySpec
from scaleset_operator.planning.batches import StepReason, Stop
from scaleset_operator.planning.instances import Batch
from scaleset_operator.planning.preview import plan_rollout


def test_fourteen_instances_with_the_default_policy_take_nine_batches_domain_by_domain() -> None:
    preview = plan_rollout(replicas=14, upgrade_domain_count=5, policy=UpgradePolicySpec())
    assert preview.upgrade_domains == [[0, 5, 10], [1, 6, 11], [2, 7, 12], [3, 8, 13], [4, 9]]
    assert preview.batches == [
        Batch(0, (0, 5)),
        Batch(0, (10,)),
        Batch(1, (1, 6)),
        Batch(1, (11,)),
        Batch(2, (2, 7)),
        Batch(2, (12,)),
        Batch(3, (3, 8)),
        Batch(3, (13,)),
        Batch(4, (4, 9)),
    ]
    assert preview.held_by is None


def test_minimum_duration_counts_each_stabilization_and_each_pause_between_batches() -> None:
    policy = make_policy(
        rollingUpgrade={"pauseTimeBetweenBatches": "1m"}, healthCheck={"stabilizationPeriod": "30s"}
    )
    preview = plan_rollout(replicas=5, upgrade_domain_count=5, policy=policy)
    assert len(preview.batches) == 5
    assert preview.minimum_duration == 5 * timedelta(seconds=30) + 4 * timedelta(minutes=1)


def test_manual_preview_stops_at_walk_upgrade_domain_and_says_why() -> None:
    preview = plan_rollout(
        replicas=6, upgrade_domain_count=3, policy=make_policy(mode="Manual"), walk_upgrade_domain=0
    )
    assert preview.batches == [Batch(0, (0,)), Batch(0, (3,))]
    assert preview.held_by is not None
    assert preview.held_by.reason is StepReason.WAITING_FOR_WALK
    assert "upgrade domain 1 waits" in preview.held_by.message


def test_manual_preview_without_walk_has_no_batches() -> None:
    preview = plan_rollout(replicas=6, upgrade_domain_count=3, policy=make_policy(mode="Manual"))
    assert preview.batches == []
    assert preview.held_by is not None


def test_automatic_preview_is_one_batch_of_everything() -> None:
    preview = plan_rollout(replicas=7, upgrade_domain_count=3, policy=make_policy(mode="Automatic"))
    assert preview.batches == [Batch(None, tuple(range(7)))]


def test_empty_scaleset_previews_empty_domains_and_no_batch() -> None:
    preview = plan_rollout(replicas=0, upgrade_domain_count=3, policy=UpgradePolicySpec())
    assert preview.upgrade_domains == [[], [], []]
    assert preview.batches == []


def test_instance_names_appear_in_what_holds_the_rollout() -> None:
    preview = plan_rollout(
        replicas=2,
        upgrade_domain_count=1,
        policy=make_policy(mode="Manual"),
        instance_names=lambda ordinal: f"worker-{ordinal}",
    )
    assert preview.held_by is not None
    assert preview.held_by.reason is StepReason.WAITING_FOR_WALK


def test_an_instance_down_before_the_rollout_shrinks_the_batches_that_would_take_two_down() -> None:
    # maxUnhealthyInstancePercent lets 2 of 10 be unhealthy at once; web-7 is one, so a batch of two
    # healthy instances shrinks to one, until web-7 itself is updated (and healthy again).
    preview = plan_rollout(
        replicas=10,
        upgrade_domain_count=5,
        policy=UpgradePolicySpec(),
        unhealthy={7},
        instance_names=lambda ordinal: f"web-{ordinal}",
    )
    assert preview.batches == [
        Batch(0, (0,)),
        Batch(0, (5,)),
        Batch(1, (1,)),
        Batch(1, (6,)),
        Batch(2, (2, 7)),
        Batch(3, (3, 8)),
        Batch(4, (4, 9)),
    ]
    assert [bool(why) for why in preview.shrunk] == [True, False, True, False, False, False, False]
    assert "web-7" in preview.shrunk[0] and "maxUnhealthyInstancePercent (20 %)" in preview.shrunk[0]
    assert preview.held_by is None


def test_instances_down_that_fill_the_budget_stop_the_preview_before_the_first_batch() -> None:
    preview = plan_rollout(replicas=10, upgrade_domain_count=5, policy=UpgradePolicySpec(), unhealthy={3, 7})
    assert preview.batches == []
    assert isinstance(preview.held_by, Stop)
    assert preview.held_by.reason is StepReason.TOO_MANY_UNHEALTHY


def test_timeline_starts_each_batch_a_pause_after_the_last_one_was_seen_healthy() -> None:
    # README "Health gates": an instance counts as healthy once Ready for the stabilisation period;
    # pauseTimeBetweenBatches counts from the moment the batch was seen healthy and does not delay the
    # first batch. Each instance here becomes Ready 20s after its update.
    policy = make_policy(
        rollingUpgrade={"pauseTimeBetweenBatches": "1m"}, healthCheck={"stabilizationPeriod": "30s"}
    )
    start, stabilise, pause = timedelta(seconds=20), timedelta(seconds=30), timedelta(minutes=1)
    preview = plan_rollout(replicas=5, upgrade_domain_count=5, policy=policy, instance_start=start)
    assert [(t.started, t.healthy) for t in preview.timeline] == [
        (k * (start + stabilise + pause), k * (start + stabilise + pause) + start + stabilise)
        for k in range(5)
    ]
    assert preview.minimum_duration == 5 * (start + stabilise) + 4 * pause


def test_timeline_of_a_fleet_that_takes_no_time_has_every_batch_at_zero() -> None:
    preview = plan_rollout(replicas=14, upgrade_domain_count=5, policy=UpgradePolicySpec())
    assert len(preview.timeline) == len(preview.batches) == 9
    assert {(t.started, t.healthy) for t in preview.timeline} == {(timedelta(0), timedelta(0))}


def test_instances_that_take_time_to_start_do_not_change_the_batches() -> None:
    quick = plan_rollout(replicas=14, upgrade_domain_count=5, policy=UpgradePolicySpec())
    slow = plan_rollout(
        replicas=14, upgrade_domain_count=5, policy=UpgradePolicySpec(), instance_start=timedelta(minutes=2)
    )
    assert slow.batches == quick.batches
    assert slow.timeline[-1].healthy == 9 * timedelta(minutes=2)
