"""Rollback and restart planning: when a rollback is allowed, what the policy starts, and the order of its batches."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.planning.rollout_sim import NEW, OLD, T0, healthy_fleet, make_policy

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
    unhealthy_budget,
)
from scaleset_operator.planning.instances import Batch, HealthGate, InstanceState, RolloutState
from scaleset_operator.planning.restart import restart_revision, restart_step, restart_view
from scaleset_operator.planning.rollback import (
    Accepted,
    Action,
    Lock,
    PolicyRollback,
    Refusal,
    Refused,
    decide_restart,
    decide_rollback,
    held_view,
    policy_rollback,
    rollback_allowed,
    rollback_step,
    shrunk_local_resources,
)

LOCK = Lock(locked=True, from_revision=OLD, to_revision=NEW)


def template(size_limit: str | None = None, ephemeral: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "os", "image": "app:v1"}
    if ephemeral:
        container["resources"] = {k: {"ephemeral-storage": v} for k, v in ephemeral.items()}
    volume: dict[str, Any] = {"name": "scratch", "emptyDir": {}}
    if size_limit:
        volume["emptyDir"]["sizeLimit"] = size_limit
    return {"spec": {"containers": [container], "volumes": [volume]}}


def fleet(
    replicas: int, on_new: set[int], unhealthy: frozenset[int] | set[int] = frozenset()
) -> list[InstanceState]:
    instances = []
    for instance in healthy_fleet(replicas):
        if instance.ordinal in on_new:
            instance = replace(instance, revision=NEW)
        if instance.ordinal in unhealthy:
            instance = replace(instance, ready=False, ready_since=None)
        instances.append(instance)
    return instances


# --------------------------------------------------------------------------- when it is allowed


GATE = HealthGate()


def allowed(lock: Lock, replicas: int, instances: list[InstanceState]) -> bool:
    return rollback_allowed(lock, replicas, instances, GATE, T0)


def test_rollback_is_allowed_while_some_instance_is_not_on_the_new_revision() -> None:
    assert allowed(LOCK, 5, fleet(5, on_new={0, 1}))


def test_rollback_is_not_allowed_once_every_instance_is_on_the_new_revision_and_healthy() -> None:
    assert not allowed(LOCK, 5, fleet(5, on_new={0, 1, 2, 3, 4}))


def test_rollback_is_allowed_while_the_last_batch_has_not_passed_its_health_gate() -> None:
    # DESIGN behaviour 5: "an upgrade is in progress until its last batch has passed that gate".
    assert allowed(LOCK, 5, fleet(5, on_new={0, 1, 2, 3, 4}, unhealthy={4}))


def test_a_single_instance_upgrade_can_be_rolled_back_until_its_instance_is_healthy() -> None:
    assert allowed(LOCK, 1, fleet(1, on_new={0}, unhealthy={0}))
    assert not allowed(LOCK, 1, fleet(1, on_new={0}))


def test_an_instance_still_stabilizing_has_not_passed_the_gate() -> None:
    gate = HealthGate(stabilization=timedelta(minutes=5))
    instances = fleet(2, on_new={0, 1})
    instances[1] = replace(instances[1], ready_since=T0 - timedelta(minutes=1))
    assert rollback_allowed(LOCK, 2, instances, gate, T0)
    assert not rollback_allowed(LOCK, 2, instances, gate, T0 + timedelta(minutes=4))


def test_rollback_is_not_allowed_without_a_running_upgrade() -> None:
    assert not allowed(Lock(locked=False, from_revision=OLD, to_revision=NEW), 5, fleet(5, {0}))


def test_a_missing_instance_counts_as_not_yet_on_the_new_revision() -> None:
    instances = [i for i in fleet(5, on_new={0, 1, 2, 3, 4}) if i.ordinal != 4]
    assert allowed(LOCK, 5, instances)


def test_rollback_is_refused_when_no_upgrade_is_in_progress() -> None:
    decision = decide_rollback(
        Lock(locked=False, from_revision=OLD, to_revision=NEW),
        5,
        fleet(5, set()),
        template(),
        template(),
        GATE,
        T0,
    )
    assert isinstance(decision, Refused)
    assert decision.reason == Refusal.NO_UPGRADE_IN_PROGRESS
    assert "apply the previous template as a new update" in decision.message


def test_rollback_is_refused_while_another_action_runs() -> None:
    lock = replace(LOCK, action=Action.RESTART)
    decision = decide_rollback(lock, 5, fleet(5, {0}), template(), template(), GATE, T0)
    assert isinstance(decision, Refused)
    assert decision.reason == Refusal.ACTION_IN_PROGRESS


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (template("1Gi"), template("2Gi"), "emptyDir.sizeLimit from 2Gi to 1Gi"),
        (template("1Gi"), template(None), "emptyDir.sizeLimit from unlimited to 1Gi"),
        (
            template(ephemeral={"requests": "1Gi"}),
            template(ephemeral={"requests": "4Gi"}),
            "requests.ephemeral-storage from 4Gi to 1Gi",
        ),
        (template(), template(ephemeral={"requests": "4Gi"}), "requests.ephemeral-storage from 4Gi to none"),
        (
            template(ephemeral={"limits": "1Gi"}),
            template(ephemeral={"limits": "2Gi"}),
            "limits.ephemeral-storage from 2Gi to 1Gi",
        ),
    ],
)
def test_rollback_that_would_shrink_what_the_update_grew_is_refused(
    old: dict[str, Any], new: dict[str, Any], field: str
) -> None:
    decision = decide_rollback(LOCK, 5, fleet(5, {0}), old, new, GATE, T0)
    assert isinstance(decision, Refused)
    assert decision.reason == Refusal.WOULD_SHRINK
    assert field in decision.message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (template("2Gi"), template("1Gi")),  # the update shrank it: going back grows it
        (template(None), template("1Gi")),  # back to unlimited
        (template(ephemeral={"limits": "1Gi"}), template()),  # a limit dropped is no limit
        (template("1Gi"), template("1024Mi")),  # the same size spelled differently
    ],
)
def test_rollback_that_grows_or_keeps_local_resources_is_accepted(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert isinstance(decide_rollback(LOCK, 5, fleet(5, {0}), old, new, GATE, T0), Accepted)


def test_shrink_check_ignores_volumes_only_one_side_has() -> None:
    grown = {"spec": {"containers": [], "volumes": [{"name": "a", "emptyDir": {"sizeLimit": "2Gi"}}]}}
    back = {"spec": {"containers": [], "volumes": [{"name": "b", "emptyDir": {"sizeLimit": "1Gi"}}]}}
    assert shrunk_local_resources(grown, back) == []


def test_restart_is_refused_during_an_upgrade_and_accepted_between() -> None:
    refused = decide_restart(LOCK)
    assert isinstance(refused, Refused) and refused.reason == Refusal.UPGRADE_IN_PROGRESS
    assert isinstance(decide_restart(Lock(locked=False)), Accepted)
    busy = decide_restart(Lock(locked=True, action=Action.ROLLBACK))
    assert isinstance(busy, Refused) and busy.reason == Refusal.ACTION_IN_PROGRESS


# --------------------------------------------------------------------------- what the policy starts


def stop(reason: StepReason) -> Stop:
    return Stop(reason, "breach")


BREACH = {"rollingUpgrade": {"rollbackFailedInstancesOnPolicyBreach": True}}


@pytest.mark.parametrize(
    ("policy", "step", "expected"),
    [
        ({}, Stop(StepReason.TOO_MANY_UNHEALTHY_UPGRADED, "breach", (5, 0)), None),
        # "rollback failed instances to previous model if the rolling upgrade policy is violated":
        # the failed upgraded instances, not the upgrade.
        (
            BREACH,
            Stop(StepReason.TOO_MANY_UNHEALTHY_UPGRADED, "breach", (5, 0)),
            PolicyRollback(StepReason.TOO_MANY_UNHEALTHY_UPGRADED, (0, 5)),
        ),
        # maxUnhealthyInstancePercent is checked before a batch: no upgraded instance has failed.
        (BREACH, stop(StepReason.TOO_MANY_UNHEALTHY), None),
        (BREACH, stop(StepReason.INSTANCE_START_TIMEOUT), None),
        ({}, stop(StepReason.ROLLBACK_REQUIRED), PolicyRollback(StepReason.ROLLBACK_REQUIRED)),
        (BREACH, Wait(StepReason.BATCH_IN_PROGRESS, "waiting"), None),
    ],
)
def test_the_policy_rolls_back_what_its_settings_say(
    policy: dict[str, Any], step: Step, expected: PolicyRollback | None
) -> None:
    assert policy_rollback(make_policy(**policy), step) == expected


def test_automatic_os_upgrade_rolls_the_whole_upgrade_back_on_any_breach_unless_disabled() -> None:
    step = stop(StepReason.INSTANCE_START_TIMEOUT)
    assert policy_rollback(make_policy(), step, automatic_os_upgrade=True) == PolicyRollback(step.reason)
    upgraded = Stop(StepReason.TOO_MANY_UNHEALTHY_UPGRADED, "breach", (0,))
    both = make_policy(**BREACH)
    assert policy_rollback(both, upgraded, automatic_os_upgrade=True) == PolicyRollback(upgraded.reason)
    disabled = make_policy(automaticOSUpgrade={"enabled": True, "disableAutomaticRollback": True})
    assert policy_rollback(disabled, step, automatic_os_upgrade=True) is None


# --------------------------------------------------------------------------- the rollback's batches


def plan_rollback(
    instances: list[InstanceState],
    policy: UpgradePolicySpec,
    rollout: RolloutState = RolloutState(),
    only: set[int] | None = None,
    **kw: Any,
) -> Step:
    return rollback_step(
        only=only,
        replicas=kw.get("replicas", len(instances)),
        upgrade_domain_count=kw.get("upgrade_domain_count", 5),
        paused=kw.get("paused", False),
        policy=policy,
        target_revision=OLD,
        instances=instances,
        rollout=rollout,
        now=kw.get("now", T0),
    )


def test_rollback_walks_the_updated_domains_from_the_highest_down() -> None:
    step = plan_rollback(fleet(10, on_new={0, 5, 1, 6, 2}), make_policy())
    assert isinstance(step, StartBatch)
    assert step.batch.upgrade_domain == 2
    assert step.batch.ordinals == (2,)


def test_rollback_takes_the_unhealthy_instances_first() -> None:
    step = plan_rollback(fleet(10, on_new={0, 5, 1, 6}, unhealthy={0}), make_policy())
    assert isinstance(step, StartBatch)
    assert step.batch.ordinals == (0,)


def test_rollback_is_not_held_by_manual_mode_walk() -> None:
    step = plan_rollback(fleet(10, on_new={0, 5}), make_policy(mode="Manual"))
    assert isinstance(step, StartBatch)
    assert step.batch.ordinals == (0, 5)


def test_rollback_is_held_by_spec_paused() -> None:
    step = plan_rollback(fleet(10, on_new={0, 5}), make_policy(), paused=True)
    assert isinstance(step, Wait) and step.reason == StepReason.PAUSED


def test_rollback_of_an_instance_that_never_starts_again_pauses_rather_than_rolling_back() -> None:
    policy = make_policy(healthCheck={"instanceStartTimeout": "1m", "onInstanceStartTimeout": "Rollback"})
    stuck = replace(fleet(5, set())[0], ready=False, ready_since=None, updated_at=T0)
    instances = [stuck, *fleet(5, set())[1:]]
    rollout = RolloutState(batch=Batch(0, (0,)), revision=OLD, batch_started_at=T0)
    step = plan_rollback(instances, policy, rollout, now=T0 + timedelta(minutes=2))
    assert isinstance(step, Stop)
    assert step.reason == StepReason.INSTANCE_START_TIMEOUT


def test_a_rollback_of_the_failed_instances_leaves_the_healthy_upgraded_ones_alone() -> None:
    # Domains 0 and 1 upgraded; web-1 and web-6 failed: only they go back, web-0 and web-5 stay on NEW.
    instances = fleet(10, on_new={0, 5, 1, 6}, unhealthy={1, 6})
    step = plan_rollback(instances, make_policy(), only={1, 6})
    assert isinstance(step, StartBatch)
    assert step.batch == Batch(1, (1, 6))
    healthy_again = {"revision": OLD, "ready": True, "ready_since": T0 - timedelta(minutes=1)}
    back = [replace(i, **healthy_again) if i.ordinal in (1, 6) else i for i in instances]
    assert isinstance(plan_rollback(back, make_policy(), only={1, 6}), Complete)
    assert isinstance(plan_rollback(back, make_policy()), StartBatch)  # a whole rollback would go on


def test_after_a_rollback_of_the_failed_instances_the_healthy_upgraded_ones_are_held() -> None:
    # The template still asks for NEW, which was rolled back: web-0 and web-5 stay on it, and the
    # planner (rolling to OLD, the revision the upgrade came from) has nothing to do.
    instances = fleet(10, on_new={0, 5})
    view = held_view(instances, NEW, OLD)
    assert all(i.revision == OLD for i in view)
    step = next_step(
        replicas=10,
        upgrade_domain_count=5,
        walk_upgrade_domain=None,
        paused=False,
        policy=make_policy(),
        update_revision=OLD,
        instances=view,
        rollout=RolloutState(),
        now=T0,
    )
    assert isinstance(step, Complete)
    assert held_view(instances, None, OLD) == instances


def test_rollback_completes_when_every_instance_is_back_and_healthy() -> None:
    assert isinstance(plan_rollback(fleet(5, set()), make_policy()), Complete)


@st.composite
def rollback_cases(draw: st.DrawFn) -> tuple[int, int, set[int], set[int], UpgradePolicySpec]:
    replicas = draw(st.integers(1, 30))
    domains = draw(st.integers(1, 8))
    # The forward rollout reached a prefix of the domains, partly into the last one.
    reached = draw(st.integers(0, domains - 1))
    candidates = [o for o in range(replicas) if o % domains <= reached]
    on_new = set(draw(st.lists(st.sampled_from(candidates), unique=True))) if candidates else set()
    unhealthy = set(draw(st.lists(st.sampled_from(sorted(on_new)), unique=True))) if on_new else set()
    percent = draw(st.sampled_from([10, 20, 50, 100]))
    policy = make_policy(
        mode=draw(st.sampled_from(["Rolling", "Manual"])),
        rollingUpgrade={
            "maxBatchInstancePercent": percent,
            "maxUnhealthyInstancePercent": draw(
                st.sampled_from([p for p in (10, 20, 50, 100) if p >= percent])
            ),
            "maxUnhealthyUpgradedInstancePercent": 100,
        },
    )
    return replicas, domains, on_new, unhealthy, policy


@settings(max_examples=150, deadline=None)
@given(rollback_cases())
def test_a_rollback_moves_only_updated_instances_one_batch_at_a_time_to_completion(
    case: tuple[int, int, set[int], set[int], UpgradePolicySpec],
) -> None:
    replicas, domains, on_new, unhealthy, policy = case
    instances = {i.ordinal: i for i in fleet(replicas, on_new, unhealthy)}
    untouched = {o: i for o, i in instances.items() if o not in on_new}
    rollout, now, moved = RolloutState(), T0, []
    gate = HealthGate.of(policy.health_check)
    for _ in range(4 * replicas + 4):
        step = plan_rollback(list(instances.values()), policy, rollout, now=now, upgrade_domain_count=domains)
        if isinstance(step, Complete):
            break
        if isinstance(step, StartBatch):
            assert len(step.batch.ordinals) <= batch_size(replicas, policy)
            assert {o % domains for o in step.batch.ordinals} == {step.batch.upgrade_domain}
            down = [o for o, i in instances.items() if not gate.is_healthy(i, now)]
            assert set(down) <= set(step.batch.ordinals) | unhealthy
            # The same limits as a rollout: healthy instances go down only into room the budget leaves.
            taken = set(step.batch.ordinals) - set(down)
            assert not taken or len(down) + len(taken) <= unhealthy_budget(replicas, policy)
            for ordinal in step.batch.ordinals:
                assert ordinal in on_new  # an instance never updated is never touched
                instances[ordinal] = replace(
                    instances[ordinal], revision=OLD, ready=False, ready_since=None, updated_at=now
                )
                moved.append(ordinal)
            rollout = RolloutState(batch=step.batch, revision=OLD, batch_started_at=now)
        now += timedelta(seconds=5)
        for ordinal, instance in instances.items():
            if instance.revision == OLD and not instance.ready:
                instances[ordinal] = replace(instance, ready=True, ready_since=now)
    else:
        pytest.fail("the rollback did not complete")
    assert sorted(moved) == sorted(on_new)
    assert all(instances[o] == i for o, i in untouched.items())
    # Healthy instances go back from the highest domain down (unhealthy ones went first).
    healthy_order = [o % domains for o in moved if o not in unhealthy]
    assert healthy_order == sorted(healthy_order, reverse=True)


# --------------------------------------------------------------------------- restart


def test_restart_view_counts_instances_put_on_their_revision_since_the_request_as_restarted() -> None:
    requested = T0
    before = healthy_fleet(2)
    after = replace(before[1], updated_at=T0 + timedelta(seconds=1))
    view = restart_view([before[0], after], requested)
    assert view[0].revision != restart_revision(requested)
    assert view[1].revision == restart_revision(requested)


def restart_plan(instances: list[InstanceState], requested_at: datetime, policy: UpgradePolicySpec) -> Step:
    return restart_step(
        replicas=len(instances),
        upgrade_domain_count=5,
        paused=False,
        policy=policy,
        instances=instances,
        rollout=RolloutState(),
        requested_at=requested_at,
        now=T0,
    )


def test_a_restart_keeps_the_unhealthy_budget_of_the_policy() -> None:
    # 10 instances, 2 may be unhealthy at once (maxUnhealthyInstancePercent 20 %; the upgraded limit is
    # lifted so that this test sees the budget alone). Down instances go first: a restart repairs.
    policy = make_policy(rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 100})
    requested = T0 - timedelta(minutes=1)
    instances = fleet(10, set(), unhealthy={7})
    step = restart_plan(instances, requested, policy)
    assert isinstance(step, StartBatch) and step.batch == Batch(2, (7,))
    # web-7 is recreated and still starting when web-3 falls ill: web-3 is down already, it goes.
    instances[7] = replace(instances[7], updated_at=T0)
    instances[3] = replace(instances[3], ready=False, ready_since=None)
    step = restart_plan(instances, requested, policy)
    assert isinstance(step, StartBatch) and step.batch == Batch(3, (3,))
    # Both recreated and still starting: they fill the budget, so no healthy instance is restarted.
    instances[3] = replace(instances[3], updated_at=T0)
    step = restart_plan(instances, requested, policy)
    assert isinstance(step, Stop) and step.reason is StepReason.TOO_MANY_UNHEALTHY
    assert step.ordinals == (3, 7)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 25), st.integers(1, 6), st.sampled_from([10, 20, 50]))
def test_a_restart_recreates_every_instance_once_domain_by_domain(
    replicas: int, domains: int, percent: int
) -> None:
    policy = make_policy(
        rollingUpgrade={"maxBatchInstancePercent": percent, "maxUnhealthyInstancePercent": max(percent, 20)}
    )
    instances = {i.ordinal: i for i in healthy_fleet(replicas)}
    requested, now, rollout = T0, T0, RolloutState()
    restarted: list[int] = []
    last_domain = -1
    for _ in range(4 * replicas + 4):
        step = restart_step(
            replicas=replicas,
            upgrade_domain_count=domains,
            paused=False,
            policy=policy,
            instances=list(instances.values()),
            rollout=rollout,
            requested_at=requested,
            now=now,
        )
        if isinstance(step, Complete):
            break
        if isinstance(step, StartBatch):
            assert step.batch.upgrade_domain is not None and step.batch.upgrade_domain >= last_domain
            last_domain = step.batch.upgrade_domain
            assert len(step.batch.ordinals) <= batch_size(replicas, policy)
            for ordinal in step.batch.ordinals:
                instances[ordinal] = replace(
                    instances[ordinal], ready=False, ready_since=None, updated_at=now
                )
                restarted.append(ordinal)
            rollout = RolloutState(
                batch=step.batch, revision=restart_revision(requested), batch_started_at=now
            )
        now += timedelta(seconds=5)
        for ordinal, instance in instances.items():
            if not instance.ready:
                instances[ordinal] = replace(instance, ready=True, ready_since=now)
    else:
        pytest.fail("the restart did not complete")
    assert sorted(restarted) == list(range(replicas))
