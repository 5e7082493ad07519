"""The ScaleSet status a pass writes, and the Events it implies, as planning/status.py computes them.

Expected values come from the definitions: the Kubernetes API conventions for conditions
(lastTransitionTime moves only when a condition's status changes; observedGeneration is the generation
the status was computed from), StatefulSet's status counts (replicas are the instances that exist,
readyReplicas the Ready ones, updatedReplicas those on updateRevision), and docs/operator.md (the
selector of a staged set names its production slot; phase Idle when no upgrade set one; no rollback of
a staged set; EvictionBlocked once and not for a member of the batch; InstancesCannotStart when it is
news; a refused pass is not Ready, not Progressing and Stalled, and written only when that changes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from rollout_sim import NEW, OLD, T0, healthy_fleet, make_policy

from scaleset_operator.identity import LABEL_SCALESET, LABEL_SLOT
from scaleset_operator.planning.batches import Complete, StepReason, Wait
from scaleset_operator.planning.instances import ContainerWaiting, InstanceState
from scaleset_operator.planning.rollback import Lock
from scaleset_operator.planning.rollout import Notice
from scaleset_operator.planning.status import ScaleSetView, plan_refusal, plan_status

STAMP = "2026-03-01T12:00:00Z"  # T0 as status writes it
EARLIER = "2026-02-01T08:30:00Z"
AT_REST = Lock(locked=False)
UPGRADING = Lock(locked=True, from_revision=OLD, to_revision=NEW)


def view(**changes: Any) -> ScaleSetView:
    """web: three instances in three domains, at rest on NEW, generation 7, nothing stored yet."""
    base = ScaleSetView(
        name="web",
        generation=7,
        slot=None,
        replicas=3,
        upgrade_domain_count=3,
        policy=make_policy(),
        template_revision=NEW,
        current_revision=NEW,
        update_revision=NEW,
        upgrade={},
        conditions=[],
        lock=AT_REST,
    )
    return replace(base, **changes)


@dataclass(frozen=True)
class Refusal:
    instance: str

    def describe(self) -> str:
        return f"evicting {self.instance} is refused by PodDisruptionBudget web-budget; nothing was deleted"


def by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def cannot_start(ordinal: int) -> InstanceState:
    """An instance on NEW whose image name does not parse: the kubelet never starts it by itself."""
    return InstanceState(
        f"web-{ordinal}",
        ordinal,
        NEW,
        ready=False,
        updated_at=T0 - timedelta(minutes=1),
        started_at=T0 - timedelta(minutes=1),
        waiting=(ContainerWaiting("os", "InvalidImageName", 'couldn\'t parse image name "bad name"'),),
    )


# ------------------------------------------------------------------ conditions (API conventions)


@pytest.mark.parametrize(
    "stored_status,expected_since",
    [
        ("True", EARLIER),  # Ready stays True: its transition time is the one stored
        ("False", STAMP),  # Ready flips to True: it transitions now
    ],
)
def test_a_conditions_transition_time_moves_only_when_its_status_changes(
    stored_status: str, expected_since: str
) -> None:
    stored = {
        "type": "Ready",
        "status": stored_status,
        "reason": "Before",
        "message": "",
        "lastTransitionTime": EARLIER,
        "observedGeneration": 6,
    }
    plan = plan_status(view(conditions=[stored]), healthy_fleet(3, NEW), Complete(), T0)
    ready = by_type(plan.status)["Ready"]
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == expected_since


def test_observed_generation_is_the_generation_read_in_the_status_and_each_condition() -> None:
    plan = plan_status(view(generation=12), healthy_fleet(3, NEW), Complete(), T0)
    assert plan.status["observedGeneration"] == 12
    assert {c["observedGeneration"] for c in plan.status["conditions"]} == {12}
    assert {c["lastTransitionTime"] for c in plan.status["conditions"]} == {STAMP}  # none stored before


# ------------------------------------------------------------------ counts, selector, revisions


def test_counts_are_instances_that_exist_are_ready_and_are_on_the_update_revision() -> None:
    instances = [
        InstanceState("web-0", 0, NEW, ready=True),
        InstanceState("web-1", 1, OLD, ready=True),
        InstanceState("web-2", 2, NEW, ready=False),
        InstanceState.missing("web-3", 3),
    ]
    plan = plan_status(view(replicas=4, current_revision=OLD), instances, Wait(StepReason.PAUSED, "x"), T0)
    counts = {key: plan.status[key] for key in ("replicas", "readyReplicas", "updatedReplicas")}
    assert counts == {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 2}
    assert (plan.status["currentRevision"], plan.status["updateRevision"]) == (OLD, NEW)


@pytest.mark.parametrize(
    "slot,selector",
    [
        (None, f"{LABEL_SCALESET}=web"),
        ("green", f"{LABEL_SCALESET}=web,{LABEL_SLOT}=green"),
        ("blue", f"{LABEL_SCALESET}=web,{LABEL_SLOT}=blue"),
    ],
)
def test_the_label_selector_names_the_production_slot_of_a_staged_set(
    slot: str | None, selector: str
) -> None:
    plan = plan_status(view(slot=slot), healthy_fleet(3, NEW), Complete(), T0)
    assert plan.status["labelSelector"] == selector


def test_each_upgrade_domain_with_instances_is_summarised() -> None:
    instances = [
        InstanceState("web-0", 0, NEW, ready=True),  # domain 0
        InstanceState("web-1", 1, OLD, ready=True),  # domain 1
        InstanceState("web-3", 3, NEW, ready=False),  # domain 0 again (round-robin); domain 2 holds none
    ]
    plan = plan_status(view(upgrade_domain_count=3), instances, Wait(StepReason.PAUSED, "x"), T0)
    assert plan.status["upgradeDomains"] == [
        {"index": 0, "instances": ["web-0", "web-3"], "revision": NEW, "updated": 2, "healthy": 1},
        {"index": 1, "instances": ["web-1"], "revision": OLD, "updated": 0, "healthy": 1},
    ]


# ------------------------------------------------------------------ status.upgrade


@pytest.mark.parametrize(
    "stored,phase",
    [({}, "Idle"), ({"phase": None}, "Idle"), ({"phase": "RollingForward"}, "RollingForward")],
)
def test_the_phase_is_idle_unless_the_upgrade_set_one(stored: dict[str, Any], phase: str) -> None:
    plan = plan_status(view(upgrade=stored), healthy_fleet(3, NEW), Complete(), T0)
    assert plan.status["upgrade"]["phase"] == phase


@pytest.mark.parametrize("mode,allowed", [("Rolling", True), ("Staged", False)])
def test_an_upgrade_in_progress_can_be_rolled_back_unless_the_set_is_staged(mode: str, allowed: bool) -> None:
    upgrade = {"locked": True, "fromRevision": OLD, "toRevision": NEW, "phase": "RollingForward"}
    instances = [*healthy_fleet(1, NEW), *healthy_fleet(3, OLD)[1:]]  # web-1 and web-2 not updated yet
    plan = plan_status(
        view(policy=make_policy(mode=mode), upgrade=upgrade, lock=UPGRADING, current_revision=OLD),
        instances,
        Wait(StepReason.BATCH_IN_PROGRESS, "x"),
        T0,
    )
    assert plan.status["upgrade"]["rollbackAllowed"] is allowed
    assert {k: plan.status["upgrade"][k] for k in upgrade} == upgrade  # the record is kept as it is


def test_nothing_at_rest_can_be_rolled_back() -> None:
    plan = plan_status(view(), healthy_fleet(3, NEW), Complete(), T0)
    assert plan.status["upgrade"]["rollbackAllowed"] is False


# ------------------------------------------------------------------ the whole value


def test_the_status_holds_every_key_once_in_order_with_the_other_summaries_after() -> None:
    extra = {"repairs": {"history": []}, "pendingUpdates": None}  # None: the merge patch deletes it
    plan = plan_status(view(), healthy_fleet(3, NEW), Complete(), T0, extra)
    assert list(plan.status) == [
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "labelSelector",
        "currentRevision",
        "updateRevision",
        "conditions",
        "upgrade",
        "upgradeDomains",
        "repairs",
        "pendingUpdates",
    ]
    assert plan.status["pendingUpdates"] is None
    assert plan.notices == []  # a healthy fleet at rest says nothing


def test_planning_leaves_the_stored_record_alone() -> None:
    upgrade = {"locked": False, "phase": "Completed"}
    conditions = [{"type": "Ready", "status": "False", "lastTransitionTime": EARLIER}]
    plan_status(view(upgrade=upgrade, conditions=conditions), healthy_fleet(3, NEW), Complete(), T0)
    assert upgrade == {"locked": False, "phase": "Completed"}
    assert conditions == [{"type": "Ready", "status": "False", "lastTransitionTime": EARLIER}]


# ------------------------------------------------------------------ Events


def test_an_eviction_refused_outside_the_batch_is_an_event_once() -> None:
    refused = [Refusal("web-3")]  # an instance above replicas, being scaled away
    first = plan_status(view(scaling_away=1), healthy_fleet(3, NEW), Complete(), T0, refused=refused)
    assert [(n.type, n.reason) for n in first.notices] == [("Warning", "EvictionBlocked")]
    assert "web-3" in first.notices[0].message
    assert by_type(first.status)["Ready"]["reason"] == "EvictionBlocked"

    conditions = first.status["conditions"]
    again = plan_status(
        view(scaling_away=1, conditions=conditions), healthy_fleet(3, NEW), Complete(), T0, refused=refused
    )
    assert again.notices == []  # the conditions say so already


def test_a_refusal_of_a_batch_member_is_left_to_the_batchs_own_event() -> None:
    upgrade = {
        "locked": True,
        "fromRevision": OLD,
        "toRevision": NEW,
        "currentBatch": {"instances": ["web-0"]},
    }
    plan = plan_status(
        view(upgrade=upgrade, lock=UPGRADING, current_revision=OLD),
        healthy_fleet(3, OLD),
        Wait(StepReason.EVICTION_BLOCKED, "The batch waits"),
        T0,
        refused=[Refusal("web-0")],
    )
    assert plan.notices == []


def test_no_refusal_no_eviction_event() -> None:
    plan = plan_status(view(), healthy_fleet(3, NEW), Complete(), T0, refused=[])
    assert [n for n in plan.notices if n.reason == "EvictionBlocked"] == []


def test_instances_that_cannot_start_are_an_event_only_while_it_is_news() -> None:
    instances = [cannot_start(0), *healthy_fleet(3, NEW)[1:]]
    first = plan_status(view(), instances, Wait(StepReason.BATCH_IN_PROGRESS, "x"), T0)
    assert [(n.type, n.reason) for n in first.notices] == [("Warning", "InstancesCannotStart")]
    assert "web-0" in first.notices[0].message and "InvalidImageName" in first.notices[0].message
    stalled = by_type(first.status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "InstancesCannotStart")

    again = plan_status(
        view(conditions=first.status["conditions"]), instances, Wait(StepReason.BATCH_IN_PROGRESS, "x"), T0
    )
    assert again.notices == []

    second_one = [cannot_start(0), cannot_start(1), *healthy_fleet(3, NEW)[2:]]
    news = plan_status(
        view(conditions=first.status["conditions"]), second_one, Wait(StepReason.BATCH_IN_PROGRESS, "x"), T0
    )
    assert [n.reason for n in news.notices] == ["InstancesCannotStart"]  # a new sentence: web-1 too


def test_the_eviction_event_comes_before_the_cannot_start_one() -> None:
    instances = [cannot_start(0), *healthy_fleet(3, NEW)[1:]]
    plan = plan_status(
        view(scaling_away=1),
        instances,
        Wait(StepReason.BATCH_IN_PROGRESS, "x"),
        T0,
        refused=[Refusal("web-3")],
    )
    assert [n.reason for n in plan.notices] == ["EvictionBlocked", "InstancesCannotStart"]


# ------------------------------------------------------------------ a refused pass


def test_a_refused_pass_is_not_ready_not_progressing_and_stalled_with_a_warning() -> None:
    plan = plan_refusal({}, 4, "QuotaExceeded", "The quota allows no more pods.", T0)
    assert plan is not None
    assert plan.status["observedGeneration"] == 4
    conditions = {
        c["type"]: (c["status"], c["reason"], c["message"], c["observedGeneration"])
        for c in plan.status["conditions"]
    }
    assert conditions == {
        "Ready": ("False", "QuotaExceeded", "The quota allows no more pods.", 4),
        "Progressing": ("False", "QuotaExceeded", "Running instances are kept as they are.", 4),
        "Stalled": ("True", "QuotaExceeded", "The quota allows no more pods.", 4),
    }
    assert plan.notices == [Notice("Warning", "QuotaExceeded", "The quota allows no more pods.")]


def test_a_refusal_already_written_is_not_written_again() -> None:
    first = plan_refusal({}, 4, "QuotaExceeded", "The quota allows no more pods.", T0)
    assert first is not None
    later = T0 + timedelta(minutes=5)
    assert plan_refusal(first.status, 4, "QuotaExceeded", "The quota allows no more pods.", later) is None


def test_a_different_refusal_is_written_and_keeps_the_transition_times_of_unchanged_statuses() -> None:
    first = plan_refusal({}, 4, "QuotaExceeded", "The quota allows no more pods.", T0)
    assert first is not None
    later = T0 + timedelta(minutes=5)
    second = plan_refusal(first.status, 4, "Forbidden", "The operator may not create pods.", later)
    assert second is not None
    assert {c["reason"] for c in second.status["conditions"]} == {"Forbidden"}
    assert {c["lastTransitionTime"] for c in second.status["conditions"]} == {STAMP}  # no status flipped
    assert [n.reason for n in second.notices] == ["Forbidden"]


def test_a_refusal_after_a_ready_set_flips_ready_now() -> None:
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "AllInstancesHealthy",
        "lastTransitionTime": EARLIER,
    }
    plan = plan_refusal({"conditions": [ready]}, 5, "InvalidSpec", "spec.replicas is negative.", T0)
    assert plan is not None
    assert by_type(plan.status)["Ready"]["lastTransitionTime"] == STAMP
