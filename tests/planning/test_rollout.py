"""The transitions of status.upgrade: begin, retarget, supersede, complete, and a wait's or a stop's Event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scaleset_operator.planning.batches import StartBatch, StepReason, Wait
from scaleset_operator.planning.instances import Batch, HealthGate, InstanceState
from scaleset_operator.planning.rollback import Action
from scaleset_operator.planning.rollout import (
    HISTORY_KEPT,
    Notice,
    Revisions,
    announce,
    batch_completed,
    batch_finished,
    batch_ordinals,
    begin,
    complete,
    eviction_blocked,
    members_of,
    phase_of,
    record_batch,
    supersede,
    waiting_for_notices,
)
from scaleset_operator.planning.scheduled_events import BatchTiming

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
STAMP = "2026-03-01T12:00:00Z"


def test_a_new_template_begins_an_upgrade_from_what_runs_to_it() -> None:
    upgrade, notices = begin(
        {"phase": "Completed", "locked": False, "rolledBackRevision": "web-b"},
        Revisions(template="web-b", current="web-a", update="web-b"),
        "Rolling",
        3,
        NOW,
    )
    assert upgrade == {
        "phase": "RollingForward",
        "locked": True,
        "rolledBackRevision": None,  # None, not absent: the merge patch deletes the stored field
        "startedAt": STAMP,
        "fromRevision": "web-a",
        "toRevision": "web-b",
        "currentBatch": None,
    }
    assert notices == [
        Notice("Normal", "UpgradeStarted", "Rolling web-a to web-b (Rolling mode, 3 instances).")
    ]


def test_a_template_changed_during_the_upgrade_retargets_it_keeping_its_start() -> None:
    running = {
        "phase": "RollingForward",
        "locked": True,
        "startedAt": "t0",
        "fromRevision": "a",
        "toRevision": "b",
    }
    upgrade, notices = begin(running, Revisions(template="c", current="a", update="c"), "Rolling", 3, NOW)
    assert upgrade == {**running, "toRevision": "c"}
    assert [n.reason for n in notices] == ["UpgradeRetargeted"]


def test_nothing_to_do_changes_nothing_and_says_nothing() -> None:
    at_rest = {"phase": "Completed", "locked": False}
    assert begin(at_rest, Revisions("a", "a", "a"), "Rolling", 3, NOW) == (at_rest, [])
    running = {"phase": "RollingForward", "locked": True, "toRevision": "b"}
    assert begin(running, Revisions("b", "a", "b"), "Rolling", 3, NOW) == (running, [])


def test_a_new_template_supersedes_a_rollback_and_rolls_forward_to_it() -> None:
    rolling_back = {
        "phase": "RollingBack",
        "locked": True,
        "fromRevision": "a",
        "toRevision": "b",
        "rollback": {"fromRevision": "b", "toRevision": "a"},
        "currentBatch": {"instances": ["web-2"]},
    }
    upgrade, notices = begin(
        rolling_back, Revisions(template="c", current="a", update="c"), "Rolling", 3, NOW
    )
    assert upgrade["rollback"] is None and upgrade["currentBatch"] is None
    assert upgrade["phase"] == "RollingForward" and upgrade["toRevision"] == "c"
    assert [n.reason for n in notices] == ["RollbackSuperseded", "UpgradeRetargeted"]


def test_a_rollback_asked_for_by_the_template_goes_on() -> None:
    rolling_back = {"locked": True, "rollback": {"fromRevision": "b", "toRevision": "a"}}
    assert supersede(rolling_back, Revisions(template="b", current="b", update="a")) == (rolling_back, [])
    assert begin(rolling_back, Revisions(template="a", current="b", update="a"), "Rolling", 1, NOW) == (
        rolling_back,
        [],
    )


def test_a_new_template_supersedes_a_restart_and_upgrades_to_it() -> None:
    restarting = {"phase": "Restarting", "locked": True, "restart": {"requestedAt": "t"}, "currentBatch": {}}
    upgrade, notices = begin(restarting, Revisions(template="b", current="a", update="b"), "Rolling", 2, NOW)
    assert upgrade["restart"] is None
    assert upgrade["locked"] is True and upgrade["fromRevision"] == "a" and upgrade["toRevision"] == "b"
    assert [n.reason for n in notices] == ["RestartSuperseded", "UpgradeStarted"]
    # the template of the restart itself keeps it going
    assert supersede(restarting, Revisions(template="a", current="a", update="a")) == (restarting, [])


def test_completing_keeps_the_last_history_entries_and_the_last_action() -> None:
    old = [{"toRevision": f"r{i}", "result": "Completed"} for i in range(HISTORY_KEPT)]
    running = {
        "phase": "RollingForward",
        "locked": True,
        "startedAt": "t0",
        "fromRevision": "a",
        "toRevision": "b",
        "history": old,
        "lastAction": {"action": "Restart"},
        "currentBatch": {"upgradeDomain": 1, "instances": ["web-1"]},
        "reason": "BatchInProgress",
    }
    upgrade, notices = complete(running, Revisions("b", "a", "b"), NOW)
    entry = {
        "fromRevision": "a",
        "toRevision": "b",
        "startedAt": "t0",
        "finishedAt": STAMP,
        "result": "Completed",
    }
    assert upgrade == {
        "phase": "Completed",
        "locked": False,
        "history": [*old[1:], entry],
        "fromRevision": "a",
        "toRevision": "b",
        "startedAt": "t0",
        "lastAction": {"action": "Restart"},
    }
    assert len(upgrade["history"]) == HISTORY_KEPT
    assert notices == [
        Notice("Normal", "BatchCompleted", "Batch in upgrade domain 1 is healthy: web-1."),
        Notice("Normal", "UpgradeCompleted", "Every instance runs b."),
    ]


def test_completing_with_no_recorded_start_names_what_ran() -> None:
    upgrade, _ = complete({}, Revisions("b", "a", "b"), NOW)
    assert upgrade["history"][-1]["fromRevision"] == "a"


@pytest.mark.parametrize(
    ("batch", "said"),
    [
        (None, []),
        (
            {"upgradeDomain": None, "instances": ["web-0", "web-1"]},
            [
                Notice(
                    "Normal", "BatchCompleted", "Batch across all upgrade domains is healthy: web-0, web-1."
                )
            ],
        ),
    ],
)
def test_a_finished_batch_is_announced_once_it_is_left(batch: object, said: list[Notice]) -> None:
    assert batch_completed({"currentBatch": batch}) == said


def test_a_wait_posts_its_event_only_when_its_reason_changes() -> None:
    paused = Notice("Normal", "Paused", "spec.paused is true")
    upgrade, notices = announce({"reason": "BatchInProgress", "message": "m"}, paused)
    assert upgrade == {"reason": "Paused", "message": "spec.paused is true"}
    assert notices == [paused]
    assert announce(upgrade, Notice("Normal", "Paused", "still")) == (
        {"reason": "Paused", "message": "still"},
        [],
    )


def test_the_members_of_a_batch_are_the_instances_it_names() -> None:
    assert members_of({"currentBatch": {"instances": ["web-0", "web-3"]}}) == {"web-0", "web-3"}
    assert members_of({"currentBatch": None}) == set()


WEB = Revisions(template="web-b", current="web-a", update="web-b")


@pytest.mark.parametrize(
    ("action", "phase", "event"),
    [
        (None, "RollingForward", "Upgrading web-0, web-1 in upgrade domain 1 to web-b."),
        (Action.ROLLBACK, "RollingBack", "Rolling back web-0, web-1 in upgrade domain 1 to web-b."),
        (Action.RESTART, "Restarting", "Restarting web-0, web-1 in upgrade domain 1."),
    ],
)
def test_a_started_batch_is_recorded_with_its_instances_start_and_revision(
    action: Action | None, phase: str, event: str
) -> None:
    step = StartBatch(Batch(upgrade_domain=1, ordinals=(0, 1)), message="2 of 4 instances.")
    before = {"phase": "RollingForward", "locked": True, "reason": "Paused", "message": "old"}
    upgrade, notices = record_batch(
        before,
        step,
        ["web-0", "web-1"],
        phase=phase_of(action),
        action=action,
        revisions=WEB,
        target="web-b",
        now=NOW,
    )
    assert upgrade == {
        "phase": phase,
        "locked": True,
        "reason": "BatchStarted",
        "message": "2 of 4 instances.",
        "currentUpgradeDomain": 1,
        "currentBatch": {
            "upgradeDomain": 1,
            "instances": ["web-0", "web-1"],
            "startedAt": STAMP,
            "revision": "web-b",
        },
    }
    assert notices == [Notice("Normal", "BatchStarted", event)]
    assert before["reason"] == "Paused"  # the record read is left as it was


def test_a_batch_across_all_domains_without_a_message_clears_the_stored_one() -> None:
    step = StartBatch(Batch(upgrade_domain=None, ordinals=(0,)), reason=StepReason.BATCH_RESUMED)
    upgrade, notices = record_batch(
        {"message": "old"}, step, ["web-0"], phase="RollingForward", action=None,
        revisions=WEB, target="web-b", now=NOW,
    )  # fmt: skip
    assert upgrade["message"] is None  # None, not absent: the merge patch deletes the stored message
    assert upgrade["reason"] == "BatchResumed"
    assert upgrade["currentUpgradeDomain"] is None
    assert notices[0].message == "Upgrading web-0 across all upgrade domains to web-b."


def _ready(name: str, ordinal: int, revision: str, since: datetime) -> InstanceState:
    return InstanceState(name=name, ordinal=ordinal, revision=revision, ready=True, ready_since=since)


BATCH = {"upgradeDomain": 0, "instances": ["web-0", "web-1"], "startedAt": "t0", "revision": "web-b"}
GATE = HealthGate(stabilization=timedelta(seconds=30))
SETTLED = NOW - timedelta(seconds=30)


def test_a_batch_whose_members_are_healthy_on_the_target_records_the_precise_moment() -> None:
    members = [_ready("web-0", 0, "web-b", SETTLED), _ready("web-1", 1, "web-b", SETTLED)]
    finished = batch_finished(BATCH, "web-b", "web-b", members, GATE, NOW + timedelta(microseconds=250))
    assert finished == {**BATCH, "finishedAt": "2026-03-01T12:00:00.000250Z"}


@pytest.mark.parametrize(
    ("batch", "revision", "members"),
    [
        pytest.param(None, "web-b", [], id="no batch recorded"),
        pytest.param({**BATCH, "finishedAt": "t1"}, "web-b", None, id="already finished"),
        pytest.param(BATCH, "web-a", None, id="batch for another revision"),
        pytest.param(BATCH, "web-b", [], id="no members seen"),
        pytest.param(
            BATCH, "web-b", [_ready("web-0", 0, "web-b", SETTLED), _ready("web-1", 1, "web-a", SETTLED)],
            id="a member not on the target",
        ),
        pytest.param(
            BATCH, "web-b",
            [_ready("web-0", 0, "web-b", SETTLED), _ready("web-1", 1, "web-b", NOW - timedelta(seconds=29))],
            id="a member inside its stabilization",
        ),
    ],
)  # fmt: skip
def test_a_batch_not_healthy_now_records_nothing(
    batch: dict[str, object] | None, revision: str, members: list[InstanceState] | None
) -> None:
    seen = (
        members
        if members is not None
        else [_ready(n, i, "web-b", SETTLED) for i, n in enumerate(BATCH["instances"])]
    )
    assert batch_finished(batch, revision, "web-b", seen, GATE, NOW) is None


def test_the_ordinals_of_a_batch_are_the_numbers_its_instance_names_end_in() -> None:
    assert batch_ordinals({"instances": ["web-0", "web-12", "my-app-3", "odd"]}) == [0, 12, 3]


RUNNING = {"phase": "RollingForward", "reason": "BatchStarted", "message": "m", "currentBatch": BATCH}
STARTED = StartBatch(Batch(upgrade_domain=0, ordinals=(0, 1)))


def test_a_batch_whose_instances_have_all_agreed_goes_on_without_its_scheduled_events() -> None:
    told = {**RUNNING, "currentBatch": {**BATCH, "scheduledEvents": {"waitingFor": ["web-0"]}}}
    upgrade, step, notices = waiting_for_notices(told, STARTED, BatchTiming(True, (), None))
    assert upgrade == RUNNING
    assert step == STARTED
    assert notices == []


def test_a_batch_waits_for_the_approval_of_the_instances_told_of_it_until_its_start() -> None:
    starts_by = NOW + timedelta(minutes=15)
    upgrade, step, notices = waiting_for_notices(RUNNING, STARTED, BatchTiming(False, ("web-1",), starts_by))
    message = (
        "web-1 has been told of the coming update by a scheduled event; it starts when each approves it, "
        "or at 2026-03-01T12:15:00+00:00"
    )
    assert upgrade == {
        **RUNNING,
        "reason": "WaitingForApproval",
        "message": message,
        "currentBatch": {
            **BATCH,
            "scheduledEvents": {"waitingFor": ["web-1"], "startsBy": "2026-03-01T12:15:00Z"},
        },
    }
    assert step == Wait(StepReason.WAITING_FOR_APPROVAL, message, starts_by)
    assert notices == [Notice("Normal", "WaitingForApproval", message)]
    again, _, repeated = waiting_for_notices(upgrade, STARTED, BatchTiming(False, ("web-1",), starts_by))
    assert again == upgrade
    assert repeated == []  # still waiting: no second Event


def test_a_batch_whose_instances_are_not_all_told_yet_has_no_start_bound() -> None:
    upgrade, _, _ = waiting_for_notices(RUNNING, STARTED, BatchTiming(False, ("web-0", "web-1"), None))
    assert upgrade["message"] == (
        "web-0, web-1 have been told of the coming update by a scheduled event; it starts when each "
        "approves it, or at once every instance has been told"
    )
    assert upgrade["currentBatch"]["scheduledEvents"] == {"waitingFor": ["web-0", "web-1"], "startsBy": None}


def test_a_batch_a_disruption_budget_refuses_waits_naming_it_and_warns_once() -> None:
    refusals = ["web-0: budget web-pdb allows no disruption", "web-1: budget web-pdb allows no disruption"]
    upgrade, step, notices = eviction_blocked(RUNNING, refusals)
    message = "The batch waits: " + "; ".join(refusals)
    assert upgrade == {**RUNNING, "reason": "EvictionBlocked", "message": message}
    assert step == Wait(StepReason.EVICTION_BLOCKED, message)
    assert notices == [Notice("Warning", "EvictionBlocked", message)]
    assert eviction_blocked(upgrade, refusals)[2] == []
