"""Automatic repairs, planned with an explicit clock: who is repaired, when, one at a time, within the
budget and never during an upgrade's batch; and finished pods, replaced at once.

The expected values come from the definitions quoted in docs/behaviours.md: the scale set API's
automaticRepairsPolicy (grace period from the end of the last state change, repairs one instance at a
time in a small set), StatefulSet (a Failed or Succeeded pod is deleted and created again) and the
PodDisruptionBudget's IfHealthyBudget (a not-Ready pod may go only while the rest is within budget).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.api.models import RepairAction
from scaleset_operator.planning.repairs import (
    InstanceHealth,
    RemovePod,
    RepairFinished,
    RepairPolicy,
    RepairReason,
    RepairRecord,
    RepairResult,
    RepairWait,
    StartRepair,
    is_finished,
    plan_repair,
    unavailability_budget,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=30)
ON = RepairPolicy(enabled=True, grace_period=GRACE)


def ready(ordinal: int, uid: str | None = None) -> InstanceHealth:
    return InstanceHealth(
        ordinal,
        f"web-{ordinal}",
        uid or f"uid-{ordinal}",
        ready=True,
        healthy=True,
        updated_at=NOW - timedelta(days=1),
    )


def unready(
    ordinal: int,
    for_: timedelta,
    uid: str | None = None,
    updated: timedelta = timedelta(days=1),
) -> InstanceHealth:
    """An instance whose Ready condition went False `for_` ago, created or updated `updated` ago."""
    return InstanceHealth(
        ordinal,
        f"web-{ordinal}",
        uid or f"uid-{ordinal}",
        ready=False,
        healthy=False,
        not_ready_since=NOW - for_,
        updated_at=NOW - updated,
    )


def missing(ordinal: int) -> InstanceHealth:
    return InstanceHealth(ordinal, f"web-{ordinal}", None, ready=False, healthy=False)


def fleet(size: int, *changed: InstanceHealth) -> list[InstanceHealth]:
    by_ordinal = {i.ordinal: i for i in changed}
    return [by_ordinal.get(o) or ready(o) for o in range(size)]


def plan(
    instances: list[InstanceHealth],
    *,
    policy: RepairPolicy = ON,
    percent: int = 20,
    current: RepairRecord | None = None,
    batch: bool = False,
    held: tuple[int, ...] = (),
    now: datetime = NOW,
):  # type: ignore[no-untyped-def]
    return plan_repair(
        policy=policy,
        replicas=len(instances),
        max_unhealthy_instance_percent=percent,
        instances=instances,
        current=current,
        batch_in_flight=batch,
        held=held,
        now=now,
    )


def record(ordinal: int, uid: str = "", action: RepairAction = RepairAction.REPLACE) -> RepairRecord:
    return RepairRecord(
        f"web-{ordinal}", ordinal, action, NOW - timedelta(minutes=1), uid or f"uid-{ordinal}"
    )


# --------------------------------------------------------------------------- finished pods


@pytest.mark.parametrize(
    "phase,finished",
    [
        ("Failed", True),
        ("Succeeded", True),
        ("Running", False),
        ("Pending", False),
        ("Unknown", False),
        (None, False),
    ],
)
def test_failed_and_succeeded_pods_never_run_again(phase: str | None, finished: bool) -> None:
    # StatefulSet: "pods with phase Succeeded will also trigger this event ... We should restart the pod
    # regardless of the exit code."
    assert is_finished(phase) is finished


# --------------------------------------------------------------------------- the budget


@pytest.mark.parametrize(
    "replicas,percent,budget",
    [(10, 20, 2), (7, 20, 1), (5, 20, 1), (1, 20, 1), (100, 20, 20), (3, 100, 3), (20, 5, 1), (40, 5, 2)],
)
def test_the_unavailability_budget_is_the_share_of_all_instances_rounded_down_and_at_least_one(
    replicas: int, percent: int, budget: int
) -> None:
    assert unavailability_budget(replicas, percent) == budget


# --------------------------------------------------------------------------- when an instance is due


def test_a_healthy_fleet_has_nothing_to_repair() -> None:
    step = plan(fleet(5)).step
    assert step == RepairWait(None, "no instance has been unhealthy for its grace period", None)


def test_an_instance_not_ready_for_longer_than_the_grace_period_is_repaired() -> None:
    step = plan(fleet(5, unready(3, timedelta(minutes=31)))).step
    assert isinstance(step, StartRepair)
    assert (step.ordinal, step.instance, step.action) == (3, "web-3", RepairAction.REPLACE)
    assert step.message == "web-3 has not been Ready for 31m, longer than the grace period of 30m"


def test_an_instance_inside_its_grace_period_waits_until_it_ends() -> None:
    step = plan(fleet(5, unready(3, timedelta(minutes=29)))).step
    assert step == RepairWait(
        None, "no instance has been unhealthy for its grace period", NOW + timedelta(minutes=1)
    )


def test_the_grace_period_counts_from_the_end_of_the_last_update() -> None:
    # "The grace period starts after the state change has completed": not Ready for 40 minutes, but
    # created (or updated) 10 minutes ago, it has 20 minutes left.
    step = plan(fleet(5, unready(2, timedelta(minutes=40), updated=timedelta(minutes=10)))).step
    assert step == RepairWait(
        None, "no instance has been unhealthy for its grace period", NOW + timedelta(minutes=20)
    )


def test_a_pod_that_never_reported_ready_counts_from_its_creation() -> None:
    never = InstanceHealth(
        1, "web-1", "uid-1", ready=False, healthy=False, updated_at=NOW - timedelta(hours=1)
    )
    step = plan(fleet(5, never)).step
    assert isinstance(step, StartRepair) and step.ordinal == 1


def test_restart_is_the_repair_action_when_the_policy_says_so() -> None:
    policy = RepairPolicy(enabled=True, grace_period=GRACE, action=RepairAction.RESTART)
    step = plan(fleet(5, unready(0, timedelta(hours=1))), policy=policy).step
    assert isinstance(step, StartRepair) and step.action == RepairAction.RESTART


def test_repairs_that_are_off_repair_nothing() -> None:
    step = plan(fleet(5, unready(0, timedelta(hours=5))), policy=RepairPolicy(False, GRACE)).step
    assert step == RepairWait(None, "automatic repairs are off")


def test_the_instance_down_longest_goes_first_then_the_lowest_ordinal() -> None:
    instances = fleet(10, unready(7, timedelta(hours=2)), unready(2, timedelta(hours=1)))
    step = plan(instances).step
    assert isinstance(step, StartRepair) and step.ordinal == 7
    tie = fleet(10, unready(7, timedelta(hours=1)), unready(2, timedelta(hours=1)))
    step = plan(tie).step
    assert isinstance(step, StartRepair) and step.ordinal == 2


def test_missing_and_terminating_instances_are_not_repaired() -> None:
    # A missing pod is created again by the pass, a terminating one is on its way out: neither is due.
    going = InstanceHealth(
        1,
        "web-1",
        "uid-1",
        ready=False,
        healthy=False,
        not_ready_since=NOW - timedelta(hours=1),
        terminating=True,
    )
    assert isinstance(plan(fleet(10, missing(0), going)).step, RepairWait)


# --------------------------------------------------------------------------- what holds a repair back


def test_no_repair_during_an_upgrades_batch() -> None:
    step = plan(fleet(5, unready(3, timedelta(hours=1))), batch=True).step
    assert step == RepairWait(
        RepairReason.HELD_FOR_UPGRADE, "web-3 wait(s) for the upgrade's running batch to finish"
    )


def test_held_instances_are_left_to_their_batch_and_others_are_repaired() -> None:
    instances = fleet(10, unready(3, timedelta(hours=2)), unready(4, timedelta(hours=1)))
    step = plan(instances, held=(3,)).step
    assert isinstance(step, StartRepair) and step.ordinal == 4


@pytest.mark.parametrize(
    "replicas,percent,down,repaired",
    [
        (10, 20, 1, True),
        (10, 20, 2, True),  # 2 of 10 at 20 %: within the budget, the repaired one included
        (10, 20, 3, False),
        (5, 20, 1, True),
        (5, 20, 2, False),  # 20 % of 5 is one instance
        (1, 20, 1, True),  # a single instance may always be repaired
        (4, 50, 2, True),
        (4, 50, 3, False),
    ],
)
def test_repairs_stay_within_max_unhealthy_instance_percent(
    replicas: int, percent: int, down: int, repaired: bool
) -> None:
    instances = fleet(replicas, unready(0, timedelta(hours=1)), *[missing(o) for o in range(1, down)])
    step = plan(instances, percent=percent).step
    assert isinstance(step, StartRepair) is repaired
    if not repaired:
        assert isinstance(step, RepairWait) and step.reason == RepairReason.HELD_BY_BUDGET
        assert step.message.startswith(f"{down} of {replicas} instances are unhealthy")


# --------------------------------------------------------------------------- a repair in flight


def test_the_recorded_repair_removes_its_pod_while_it_is_still_there() -> None:
    # The operator stopped between recording the repair and removing the pod, or the eviction was refused.
    current = record(3)
    result = plan(fleet(5, unready(3, timedelta(hours=1))), current=current)
    assert result.step == RemovePod(current) and result.finished is None


def test_one_repair_at_a_time() -> None:
    current = record(3)  # the pod it removed was uid-3; "new" is its replacement
    instances = fleet(
        10,
        unready(3, timedelta(minutes=1), uid="new", updated=timedelta(minutes=1)),
        unready(5, timedelta(hours=3)),
    )
    result = plan(instances, current=current)
    assert result.finished is None
    assert result.step == RepairWait(
        RepairReason.REPAIR_IN_PROGRESS, "waiting for web-3 to become Ready", NOW + timedelta(minutes=29)
    )


def test_a_repair_is_over_when_the_new_pod_is_ready_and_the_next_may_start() -> None:
    instances = fleet(10, ready(3, uid="new"), unready(5, timedelta(hours=3)))
    result = plan(instances, current=record(3))
    assert result.finished == RepairFinished(record(3), RepairResult.REPAIRED, "web-3 is Ready again")
    assert isinstance(result.step, StartRepair) and result.step.ordinal == 5


def test_a_replacement_gets_a_grace_period_of_its_own_then_the_repair_ends_unhealthy() -> None:
    still = unready(3, timedelta(minutes=31), uid="new", updated=timedelta(minutes=31))
    result = plan(fleet(5, still), current=record(3))
    assert result.finished is not None and result.finished.result == RepairResult.STILL_UNHEALTHY
    # Past its own grace period the instance is due again: the repair is tried once more.
    assert isinstance(result.step, StartRepair) and result.step.ordinal == 3


def test_an_instance_ready_again_before_its_pod_went_is_not_removed() -> None:
    result = plan(fleet(5), current=record(3))
    assert result.finished is not None and result.finished.result == RepairResult.RECOVERED
    assert isinstance(result.step, RepairWait)


def test_a_repair_waits_while_its_pod_is_going_or_gone() -> None:
    going = InstanceHealth(3, "web-3", "uid-3", ready=False, healthy=False, terminating=True)
    for instance in (going, missing(3)):
        result = plan(fleet(5, instance), current=record(3))
        assert result.step == RepairWait(RepairReason.REPAIR_IN_PROGRESS, "web-3 is being replaced")


def test_a_repair_not_carried_out_yet_is_called_off_by_an_upgrades_batch_or_by_turning_repairs_off() -> None:
    instances = fleet(5, unready(3, timedelta(hours=1)))
    for result in (
        plan(instances, current=record(3), batch=True),
        plan(instances, current=record(3), held=(3,)),
        plan(instances, current=record(3), policy=RepairPolicy(False, GRACE)),
    ):
        assert result.finished is not None and result.finished.result == RepairResult.CANCELLED
        assert not isinstance(result.step, (StartRepair, RemovePod))


def test_a_repair_of_an_instance_scaled_away_is_over() -> None:
    result = plan(fleet(3), current=record(4))
    assert result.finished is not None and result.finished.result == RepairResult.GONE


# --------------------------------------------------------------------------- properties

DURATIONS = st.integers(min_value=0, max_value=6 * 3600).map(lambda s: timedelta(seconds=s))


@st.composite
def instances_of(draw: st.DrawFn) -> list[InstanceHealth]:
    size = draw(st.integers(min_value=1, max_value=40))
    result = []
    for ordinal in range(size):
        kind = draw(st.sampled_from(["ready", "unready", "missing", "terminating", "healthy-pending"]))
        if kind == "ready":
            result.append(ready(ordinal))
        elif kind == "missing":
            result.append(missing(ordinal))
        elif kind == "healthy-pending":
            # Ready but not yet past its stabilisation period: not healthy, not repairable either.
            result.append(
                InstanceHealth(ordinal, f"web-{ordinal}", f"uid-{ordinal}", ready=True, healthy=False)
            )
        else:
            result.append(
                InstanceHealth(
                    ordinal,
                    f"web-{ordinal}",
                    f"uid-{ordinal}",
                    ready=False,
                    healthy=False,
                    not_ready_since=draw(st.none() | DURATIONS.map(lambda d: NOW - d)),
                    updated_at=draw(st.none() | DURATIONS.map(lambda d: NOW - d)),
                    terminating=kind == "terminating",
                )
            )
    return result


@settings(max_examples=150, deadline=None)
@given(
    instances=instances_of(),
    percent=st.integers(min_value=0, max_value=100),
    grace_minutes=st.integers(min_value=10, max_value=90),
    batch=st.booleans(),
    held=st.sets(st.integers(min_value=0, max_value=39), max_size=5),
)
def test_a_repair_starts_only_for_a_due_instance_outside_any_batch_within_the_budget(
    instances: list[InstanceHealth], percent: int, grace_minutes: int, batch: bool, held: set[int]
) -> None:
    grace = timedelta(minutes=grace_minutes)
    result = plan(instances, policy=RepairPolicy(True, grace), percent=percent, batch=batch, held=tuple(held))
    step = result.step
    if not isinstance(step, StartRepair):
        return
    chosen = instances[step.ordinal]
    # The reference: the sentences of the definitions, written out on their own.
    since = max(m for m in (chosen.not_ready_since, chosen.updated_at) if m is not None)
    assert not chosen.ready and chosen.uid is not None and not chosen.terminating
    assert since + grace <= NOW, "repaired inside its grace period"
    assert not batch, "repaired during an upgrade's batch"
    assert step.ordinal not in held
    down = sum(1 for i in instances if not (i.uid is not None and not i.terminating and i.healthy))
    assert down <= max(1, len(instances) * percent // 100), "a repair beyond the unavailability budget"


@settings(max_examples=150, deadline=None)
@given(instances=instances_of(), percent=st.integers(min_value=0, max_value=100), victim=st.integers(0, 39))
def test_while_a_repair_is_in_flight_no_other_starts(
    instances: list[InstanceHealth], percent: int, victim: int
) -> None:
    ordinal = victim % len(instances)
    result = plan(instances, percent=percent, current=record(ordinal))
    if result.finished is None:
        assert not isinstance(result.step, StartRepair)
        if isinstance(result.step, RemovePod):
            assert result.step.record.ordinal == ordinal


@settings(max_examples=100, deadline=None)
@given(instances=instances_of(), later=DURATIONS)
def test_a_due_repair_stays_due_as_time_passes_and_nothing_else_changes(
    instances: list[InstanceHealth], later: timedelta
) -> None:
    first = plan(instances, percent=100).step
    if isinstance(first, StartRepair):
        again = plan(instances, percent=100, now=NOW + later).step
        assert isinstance(again, StartRepair)
