"""Staged-mode planning: when the second set is built, when it may take over, the swap and what it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.planning.rollout_sim import NEW, OLD, T0, make_policy

from scaleset_operator.api.models import Slot
from scaleset_operator.identity import LABEL_SLOT
from scaleset_operator.planning.batches import Complete, StepReason, Stop, Wait
from scaleset_operator.planning.instances import InstanceState
from scaleset_operator.planning.maintenance import Closed, Deferred, GateDecision, Open
from scaleset_operator.planning.staged import (
    PreviousSet,
    StagedPlan,
    StagedRecord,
    StagedSet,
    Swap,
    finish_swap,
    other_slot,
    plan_staged,
    selector_patch,
    selects_instances,
    staged_refusal,
)

STAGED = make_policy(mode="Staged")
RECORD = StagedRecord(production=Slot.BLUE, production_revision=OLD)
LONG_AGO = T0 - timedelta(hours=1)


def standby(
    replicas: int, revision: str = NEW, ready: bool = True, since: datetime = LONG_AGO, slot: str = "green"
) -> dict[int, InstanceState]:
    return {
        o: InstanceState(
            f"web-{slot}-{o}",
            o,
            revision,
            ready=ready,
            ready_since=since if ready else None,
            updated_at=since,
        )
        for o in range(replicas)
    }


def plan(
    record: StagedRecord = RECORD,
    *,
    policy: Any = STAGED,
    template: str = NEW,
    replicas: int = 3,
    others: dict[int, InstanceState] | None = None,
    now: datetime = T0,
    swap_back: bool = False,
    quota_free: int | None = None,
    paused: bool = False,
    swap: bool = False,
    gate: GateDecision | None = None,
) -> StagedPlan:
    return plan_staged(
        record=record,
        policy=policy,
        template_revision=template,
        replicas=replicas,
        standby=others or {},
        now=now,
        swap_back_requested=swap_back,
        quota_free=quota_free,
        paused=paused,
        swap_requested=swap,
        gate=gate,
    )


# --------------------------------------------------------------------------- building the second set


def test_nothing_is_staged_while_the_template_runs_in_production() -> None:
    result = plan(template=OLD)
    assert isinstance(result.step, Complete)
    assert (result.create, result.remove, result.swap) == ((), (), None)
    assert result.record == RECORD


def test_a_new_template_creates_a_whole_second_set_in_the_other_slot() -> None:
    result = plan(replicas=3)
    assert result.create == (0, 1, 2)
    assert result.record.staging == StagedSet(Slot.GREEN, NEW, T0)
    assert isinstance(result.step, Wait) and result.step.reason == StepReason.STAGING
    assert result.swap is None


def test_the_staged_slot_is_blue_when_green_serves() -> None:
    result = plan(StagedRecord(production=Slot.GREEN, production_revision=OLD))
    assert result.record.staging is not None and result.record.staging.slot == Slot.BLUE


def test_the_swap_waits_for_the_set_as_a_whole() -> None:
    others = standby(3)
    others[2] = InstanceState("web-green-2", 2, NEW, ready=False, updated_at=T0 - timedelta(seconds=5))
    result = plan(replace(RECORD, staging=StagedSet(Slot.GREEN, NEW, T0)), others=others)
    assert isinstance(result.step, Wait) and result.step.reason == StepReason.WAITING_FOR_STAGED_SET
    assert "2 of 3" in result.step.message
    assert result.step.until == T0 - timedelta(seconds=5) + timedelta(minutes=30)  # its start timeout
    assert result.swap is None and result.create == ()


def test_a_healthy_set_is_swapped_to_and_the_swap_is_recorded_first() -> None:
    result = plan(replace(RECORD, staging=StagedSet(Slot.GREEN, NEW, T0)), others=standby(3))
    assert result.swap == Swap(Slot.GREEN, NEW, T0)
    assert result.record.swap == result.swap
    assert result.step.reason == StepReason.SWAPPING  # type: ignore[union-attr]


def test_a_stabilization_period_holds_the_swap() -> None:
    policy = make_policy(mode="Staged", healthCheck={"stabilizationPeriod": "1m"})
    others = standby(2, since=T0 - timedelta(seconds=10))
    result = plan(policy=policy, replicas=2, others=others)
    assert result.swap is None
    assert isinstance(result.step, Wait) and result.step.until == T0 + timedelta(seconds=50)


def test_a_recorded_swap_is_finished_whatever_changed_since() -> None:
    swap = Swap(Slot.GREEN, NEW, T0)
    # The template moved on and the staged set went down: the Services still all end up on one set.
    result = plan(replace(RECORD, swap=swap), template="web-newer", others=standby(3, ready=False))
    assert result.swap == swap and result.create == () and result.remove == ()


@pytest.mark.parametrize(
    ("others", "replicas", "create", "remove"),
    [
        ({}, 2, (0, 1), ()),
        (standby(2, revision="web-stale"), 2, (), (0, 1)),  # removed first, created once gone
        (standby(4), 2, (), (2, 3)),  # scaled in while staging
        ({1: standby(2)[1]}, 3, (0, 2), ()),
    ],
)
def test_the_staged_set_matches_the_template_and_replicas(
    others: dict[int, InstanceState], replicas: int, create: tuple[int, ...], remove: tuple[int, ...]
) -> None:
    result = plan(replicas=replicas, others=others)
    assert (result.create, result.remove) == (create, remove)
    assert result.swap is None


def test_a_terminating_standby_instance_is_neither_removed_again_nor_created_over() -> None:
    others = {0: replace(standby(1)[0], terminating=True)}
    result = plan(replicas=1, others=others)
    assert (result.create, result.remove) == ((), ())


# --------------------------------------------------------------------------- capacity


def test_max_extra_instances_below_the_set_waits_without_creating_any() -> None:
    policy = make_policy(mode="Staged", staged={"maxExtraInstances": 2})
    result = plan(policy=policy, replicas=3)
    assert isinstance(result.step, Wait) and result.step.reason == StepReason.STAGED_CAPACITY
    assert "spec.staged.maxExtraInstances" in result.step.message
    assert (result.create, result.remove, result.record.staging) == ((), (), None)


def test_max_extra_instances_keeps_the_previous_set_while_it_waits() -> None:
    policy = make_policy(mode="Staged", staged={"maxExtraInstances": 1})
    previous = PreviousSet(Slot.GREEN, "web-older", T0 + timedelta(minutes=5))
    result = plan(
        replace(RECORD, previous=previous), policy=policy, replicas=3, others=standby(3, "web-older")
    )
    assert result.remove == () and result.record.previous == previous


@pytest.mark.parametrize(
    ("quota_free", "others", "waits"),
    [
        (3, {}, False),
        (2, {}, True),
        (0, standby(3, revision="web-stale"), False),  # the pods removed make room for the new ones
        (1, {0: standby(1)[0]}, True),
        (2, {0: standby(1)[0]}, False),
        (None, {}, False),
    ],
)
def test_a_resource_quota_that_cannot_hold_the_set_waits(
    quota_free: int | None, others: dict[int, InstanceState], waits: bool
) -> None:
    result = plan(replicas=3, others=others, quota_free=quota_free)
    assert (result.step.reason == StepReason.STAGED_CAPACITY) is waits  # type: ignore[union-attr]
    if waits:
        assert result.create == () and result.remove == ()


# --------------------------------------------------------------------------- health of the set


@pytest.mark.parametrize(
    ("policy", "swaps"),
    [
        (make_policy(mode="Staged", rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 20}), True),
        (make_policy(mode="Staged", rollingUpgrade={"maxUnhealthyUpgradedInstancePercent": 0}), False),
        (make_policy(mode="Staged", healthCheck={"onInstanceStartTimeout": "Pause"}), False),
        (make_policy(mode="Staged", healthCheck={"onInstanceStartTimeout": "Rollback"}), False),
    ],
)
def test_an_instance_past_its_start_timeout_counts_under_the_policy(policy: Any, swaps: bool) -> None:
    others = standby(5)
    others[4] = InstanceState("web-green-4", 4, NEW, ready=False, updated_at=T0 - timedelta(hours=1))
    result = plan(policy=policy, replicas=5, others=others)
    assert (result.swap is not None) is swaps
    if not swaps:
        assert isinstance(result.step, Stop) and result.step.reason == StepReason.STAGED_SET_UNHEALTHY
        assert "production is untouched" in result.step.message and result.step.ordinals == (4,)


# --------------------------------------------------------------------------- after the swap


def test_finishing_a_swap_makes_the_staged_slot_production_and_keeps_the_old_one() -> None:
    record = replace(RECORD, staging=StagedSet(Slot.GREEN, NEW, T0), swap=Swap(Slot.GREEN, NEW, T0))
    done = finish_swap(record, record.swap, ["web", "admin"], T0, timedelta(minutes=10))  # type: ignore[arg-type]
    assert done == StagedRecord(
        production=Slot.GREEN,
        production_revision=NEW,
        previous=PreviousSet(Slot.BLUE, OLD, T0 + timedelta(minutes=10)),
        swapped_at=T0,
        services=("admin", "web"),
    )


def test_the_previous_set_is_kept_until_its_time_then_removed() -> None:
    after = finish_swap(RECORD, Swap(Slot.GREEN, NEW, T0), [], T0, timedelta(minutes=10))
    kept = standby(3, revision=OLD, slot="blue")
    early = plan(after, others=kept, now=T0 + timedelta(minutes=9))
    assert isinstance(early.step, Complete) and early.remove == ()
    late = plan(after, others=kept, now=T0 + timedelta(minutes=10))
    assert late.remove == (0, 1, 2) and late.record.previous is None


def test_swap_back_goes_to_the_kept_set_at_once() -> None:
    after = finish_swap(RECORD, Swap(Slot.GREEN, NEW, T0), [], T0, timedelta(minutes=10))
    kept = standby(3, revision=OLD, ready=False, slot="blue")  # no health wait: it served until the swap
    result = plan(after, others=kept, now=T0 + timedelta(minutes=1), swap_back=True)
    assert result.swap == Swap(Slot.BLUE, OLD, T0 + timedelta(minutes=1), back=True)
    assert result.refusal is None


@pytest.mark.parametrize(
    ("record", "others", "words"),
    [
        (RECORD, {}, "no previous set"),
        (
            replace(RECORD, previous=PreviousSet(Slot.GREEN, "web-older", T0 - timedelta(seconds=1))),
            standby(3, "web-older"),
            "no previous set",
        ),
        (
            replace(RECORD, previous=PreviousSet(Slot.GREEN, "web-older", T0 + timedelta(minutes=1))),
            {0: standby(1, "web-older")[0]},
            "lacks 2 of its 3",
        ),
    ],
)
def test_swap_back_without_a_whole_kept_set_is_refused(
    record: StagedRecord, others: dict[int, InstanceState], words: str
) -> None:
    result = plan(record, template=OLD, others=others, swap_back=True)
    assert result.swap is None and result.refusal is not None and words in result.refusal


def test_after_a_swap_back_the_revision_left_is_not_staged_again_until_the_template_moves() -> None:
    after = finish_swap(RECORD, Swap(Slot.GREEN, NEW, T0), [], T0, timedelta(minutes=10))
    back = finish_swap(after, Swap(Slot.BLUE, OLD, T0, back=True), [], T0, timedelta(minutes=10))
    assert back.production == Slot.BLUE and back.swapped_back_revision == NEW
    later = T0 + timedelta(hours=1)  # the set swapped away from is gone by now
    held = plan(back, template=NEW, now=later)
    assert isinstance(held.step, Stop) and held.step.reason == StepReason.SWAPPED_BACK
    assert held.create == () and held.record.swapped_back_revision == NEW
    moved = plan(back, template="web-newer", now=later)
    assert moved.create == (0, 1, 2) and moved.record.swapped_back_revision is None


def test_a_template_back_on_the_kept_revision_swaps_to_the_kept_set_without_creating() -> None:
    after = finish_swap(RECORD, Swap(Slot.GREEN, NEW, T0), [], T0, timedelta(minutes=10))
    result = plan(after, template=OLD, others=standby(3, revision=OLD, slot="blue"))
    assert result.create == () and result.remove == ()
    assert result.swap == Swap(Slot.BLUE, OLD, T0)


def test_leaving_staged_mode_gives_up_the_staged_set_but_keeps_the_previous_one() -> None:
    rolling = make_policy(mode="Rolling")
    staging = plan(replace(RECORD, staging=StagedSet(Slot.GREEN, NEW, T0)), policy=rolling, others=standby(2))
    assert staging.remove == (0, 1) and staging.record.staging is None and staging.create == ()
    after = finish_swap(RECORD, Swap(Slot.GREEN, NEW, T0), [], T0, timedelta(minutes=10))
    kept = plan(after, policy=rolling, template=NEW, others=standby(3, revision=OLD, slot="blue"))
    assert kept.remove == () and kept.record.previous == after.previous


# --------------------------------------------------------------------------- Services and refusals


@pytest.mark.parametrize(
    ("selector", "selects"),
    [
        ({"app": "web"}, True),
        ({"app": "web", LABEL_SLOT: "green"}, True),
        ({"app": "web", "tier": "front"}, False),
        ({"app": "other"}, False),
        ({LABEL_SLOT: "blue"}, False),  # nothing but the slot: not the user's selection of these instances
        ({}, False),
        (None, False),
    ],
)
def test_which_services_select_the_instances(selector: dict[str, str] | None, selects: bool) -> None:
    labels = [{"app": "web", "fleet.scaleset.dev/scaleset": "web", LABEL_SLOT: "blue"}]
    assert selects_instances(selector, labels) is selects


def test_a_service_moves_with_one_change_of_its_selectors_slot_key() -> None:
    assert selector_patch({"app": "web"}, Slot.BLUE) == {"spec": {"selector": {LABEL_SLOT: "blue"}}}
    assert selector_patch({"app": "web", LABEL_SLOT: "blue"}, Slot.GREEN) == {
        "spec": {"selector": {LABEL_SLOT: "green"}}
    }
    assert selector_patch({"app": "web", LABEL_SLOT: "green"}, Slot.GREEN) is None


@pytest.mark.parametrize(
    ("selector", "occupied", "pinned"),
    [
        ({"app": "web"}, {"blue"}, "blue"),  # a new Service
        ({"app": "web", LABEL_SLOT: "blue"}, {"blue", "green"}, None),
        # Another operator swapped to green meanwhile: a stale pin must not move the Service back.
        ({"app": "web", LABEL_SLOT: "green"}, {"blue", "green"}, None),
        ({"app": "web", LABEL_SLOT: "green"}, {"green"}, None),
        # Left by a deleted ScaleSet of the same name whose green set served: nothing is green now.
        ({"app": "web", LABEL_SLOT: "green"}, {"blue"}, "blue"),
    ],
)
def test_pinning_adds_a_missing_slot_key_and_never_moves_a_service_off_a_slot_with_instances(
    selector: dict[str, str], occupied: set[str], pinned: str | None
) -> None:
    expected = {"spec": {"selector": {LABEL_SLOT: pinned}}} if pinned else None
    assert selector_patch(selector, Slot.BLUE, pin=True, occupied=occupied) == expected


def template(ports: list[dict[str, Any]] | None = None, size_limit: str = "2Gi") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "os", "image": "app:v1"}
    if ports is not None:
        container["ports"] = ports
    return {
        "spec": {
            "containers": [container],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": size_limit}}],
        }
    }


@pytest.mark.parametrize(
    ("new", "refused"),
    [
        (
            template([{"containerPort": 80}], size_limit="1Gi"),
            False,
        ),  # shrinking local storage: the swap's case
        (template([{"containerPort": 80, "protocol": "TCP"}]), False),  # TCP is the default
        (template([{"containerPort": 8080}]), True),
        (template([{"containerPort": 80}, {"containerPort": 443}]), True),
        (template([{"containerPort": 80, "protocol": "UDP"}]), True),
        (template(None), True),
    ],
)
def test_a_staged_upgrade_refuses_only_a_change_of_endpoints(new: dict[str, Any], refused: bool) -> None:
    problem = staged_refusal(template([{"containerPort": 80}]), new)
    assert (problem is not None) is refused
    if problem:
        assert problem.startswith("spec.template.spec.containers[os].ports cannot change in a staged upgrade")
        assert "spec.mode Rolling" in problem


def test_the_record_reads_back_as_written() -> None:
    record = StagedRecord(
        production=Slot.GREEN,
        production_revision=NEW,
        staging=StagedSet(Slot.BLUE, "web-newer", T0),
        swap=Swap(Slot.BLUE, "web-newer", T0, back=False),
        previous=PreviousSet(Slot.BLUE, OLD, T0 + timedelta(hours=1)),
        swapped_at=T0,
        swapped_back_revision=OLD,
        services=("web",),
    )
    assert StagedRecord.from_status(record.to_status(), "ignored") == record
    assert StagedRecord.from_status(None, OLD) == RECORD


# --------------------------------------------------------------------------- paused, windows, manual swap

STAGING = replace(RECORD, staging=StagedSet(Slot.GREEN, NEW, T0))
MANUAL_SWAP = make_policy(mode="Staged", staged={"swap": "Manual"})
WINDOW_CLOSED = Closed(
    T0 + timedelta(days=2), "OSImage maintenance waits for the next window of MaintenanceConfiguration w."
)


@pytest.mark.parametrize(
    ("record", "others"),
    [(RECORD, {}), (STAGING, {}), (STAGING, standby(2)), (STAGING, standby(3))],
    ids=["nothing-staged", "staging-recorded", "part-built", "healthy-set"],
)
def test_spec_paused_creates_removes_and_swaps_nothing(
    record: StagedRecord, others: dict[int, InstanceState]
) -> None:
    # "spec.paused: true starts no new batch": in Staged mode the set and the swap are the batches.
    result = plan(record, others=others, paused=True)
    assert (result.create, result.remove, result.swap) == ((), (), None)
    assert isinstance(result.step, Wait) and result.step.reason == StepReason.PAUSED
    assert result.record.staging == record.staging  # kept as it was, for the resume
    resumed = plan(record, others=others)
    assert resumed.create or resumed.swap or resumed.step.reason == StepReason.WAITING_FOR_STAGED_SET  # type: ignore[union-attr]


def test_a_recorded_swap_finishes_even_when_paused() -> None:
    swapping = replace(STAGING, swap=Swap(Slot.GREEN, NEW, T0))
    assert plan(swapping, others=standby(3), paused=True).swap == swapping.swap


def test_with_manual_swap_a_healthy_set_waits_ready_to_swap_until_asked() -> None:
    waiting = plan(STAGING, policy=MANUAL_SWAP, others=standby(3))
    assert waiting.swap is None and waiting.create == ()
    assert isinstance(waiting.step, Wait) and waiting.step.reason == StepReason.READY_TO_SWAP
    assert "scaleset swap" in waiting.step.message
    asked = plan(STAGING, policy=MANUAL_SWAP, others=standby(3), swap=True)
    assert asked.swap == Swap(Slot.GREEN, NEW, T0) and asked.swap_refusal is None


@pytest.mark.parametrize(
    ("record", "others", "template", "paused", "why"),
    [
        (RECORD, {}, OLD, False, "production (blue) runs"),
        (STAGING, {}, NEW, False, "Creating the staged set"),
        (
            STAGING,
            {**standby(2), 2: InstanceState("web-green-2", 2, NEW, ready=False, updated_at=T0)},
            NEW,
            False,
            "2 of 3",
        ),
        (STAGING, standby(3), NEW, True, "spec.paused"),
    ],
)
def test_a_swap_asked_for_before_the_set_is_ready_is_refused_and_says_why(
    record: StagedRecord, others: dict[int, InstanceState], template: str, paused: bool, why: str
) -> None:
    result = plan(record, policy=MANUAL_SWAP, template=template, others=others, paused=paused, swap=True)
    assert result.swap is None
    assert result.swap_refusal is not None and result.swap_refusal.startswith(
        "No staged set is ready to swap to"
    )
    assert why in result.swap_refusal


def test_an_automatic_package_is_not_staged_outside_its_window() -> None:
    result = plan(RECORD, gate=WINDOW_CLOSED)
    assert (result.create, result.swap, result.record.staging) == ((), None, None)
    assert isinstance(result.step, Wait) and result.step.reason == StepReason.WAITING_FOR_MAINTENANCE_WINDOW
    assert result.step.until == WINDOW_CLOSED.next_start and result.step.message == WINDOW_CLOSED.message


def test_a_staged_set_built_in_its_window_waits_for_the_next_one_to_swap() -> None:
    # Built while the window was open (creating it goes on), healthy after it closed: the swap, the
    # moment production changes, waits for the next window.
    building = plan(STAGING, others=standby(2), gate=WINDOW_CLOSED)
    assert building.create == (2,)
    held = plan(STAGING, others=standby(3), gate=WINDOW_CLOSED)
    assert held.swap is None
    assert isinstance(held.step, Wait) and held.step.reason == StepReason.WAITING_FOR_MAINTENANCE_WINDOW
    opened = Open("InsideMaintenanceWindow", "open")
    deferred = Deferred(T0 - timedelta(days=40), timedelta(days=35), "past maxDeferral")
    for gate in (opened, deferred, None):
        assert plan(STAGING, others=standby(3), gate=gate).swap == Swap(Slot.GREEN, NEW, T0)
    # A swap the user asks for is the user's, never held for a window.
    asked = plan(STAGING, policy=MANUAL_SWAP, others=standby(3), gate=WINDOW_CLOSED, swap=True)
    assert asked.swap == Swap(Slot.GREEN, NEW, T0)


@settings(max_examples=200, deadline=None)
@given(
    others=st.dictionaries(st.integers(0, 4), st.booleans(), max_size=5),
    staged=st.booleans(),
    manual=st.booleans(),
    asked=st.booleans(),
    closed=st.booleans(),
)
def test_staged_mode_swaps_only_a_whole_healthy_set_and_never_while_paused(
    others: dict[int, bool], staged: bool, manual: bool, asked: bool, closed: bool
) -> None:
    # A not-Ready instance was just created: inside its start timeout, it holds the swap.
    instances = {
        o: replace(
            standby(5)[o],
            ready=ready,
            ready_since=LONG_AGO if ready else None,
            updated_at=LONG_AGO if ready else T0,
        )
        for o, ready in others.items()
    }
    policy = MANUAL_SWAP if manual else STAGED
    record = STAGING if staged else RECORD
    gate = WINDOW_CLOSED if closed else None
    paused = plan(record, policy=policy, replicas=5, others=instances, swap=asked, gate=gate, paused=True)
    assert paused.swap is None and paused.create == () and paused.remove == ()
    result = plan(record, policy=policy, replicas=5, others=instances, swap=asked, gate=gate)
    if result.swap is not None:
        assert len(instances) == 5 and all(i.ready for i in instances.values())
        assert asked or (not manual and not closed)
    if asked:
        assert (result.swap is None) != (result.swap_refusal is None)


# --------------------------------------------------------------------------- properties


@dataclass
class World:
    """A ScaleSet in Staged mode in memory: the stored record, the standby instances and the Services'
    slot keys. `pass_` acts on one plan as control/staged.py does, and may stop after any write."""

    replicas: int
    services: int
    template: str = NEW
    now: datetime = T0
    record: StagedRecord = RECORD
    production: dict[int, str] = field(default_factory=dict)
    standby: dict[int, InstanceState] = field(default_factory=dict)
    selected: list[Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.production = dict.fromkeys(range(self.replicas), OLD)
        self.selected = [Slot.BLUE] * self.services

    def pass_(self, stop_after: int | None) -> None:
        writes = 0

        def write() -> bool:
            nonlocal writes
            writes += 1
            return stop_after is not None and writes > stop_after

        # The Services were pinned to blue before the first staging; pinning never changes a key after.
        result = plan_staged(
            record=self.record,
            policy=STAGED,
            template_revision=self.template,
            replicas=self.replicas,
            standby=self.standby,
            now=self.now,
        )
        if write():
            return
        self.record = result.record
        for ordinal in result.remove:
            if write():
                return
            del self.standby[ordinal]
        for ordinal in result.create:
            if write():
                return
            self.standby[ordinal] = InstanceState(
                f"web-{ordinal}", ordinal, self.template, ready=False, updated_at=self.now
            )
        if result.swap is None:
            return
        for index in range(self.services):
            if write():
                return
            self.selected[index] = result.swap.to_slot
        if write():
            return
        self.record = finish_swap(self.record, result.swap, [], self.now, timedelta(minutes=10))
        old = self.production
        self.production = {o: i.revision or "" for o, i in self.standby.items()}
        self.standby = {
            o: InstanceState(f"web-{o}", o, r, ready=True, updated_at=self.now) for o, r in old.items()
        }

    def tick(self) -> None:
        """Time passes: every standby instance becomes Ready."""
        self.now += timedelta(seconds=5)
        self.standby = {
            o: replace(i, ready=True, ready_since=self.now - timedelta(seconds=1))
            for o, i in self.standby.items()
        }


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(1, 6),
    services=st.integers(0, 3),
    crashes=st.lists(st.one_of(st.none(), st.integers(0, 12)), min_size=1, max_size=30),
)
def test_an_operator_stopped_after_any_write_ends_with_every_service_on_one_set_on_the_template(
    replicas: int, services: int, crashes: list[int | None]
) -> None:
    world = World(replicas, services)
    for stop_after in [*crashes, *([None] * 10)]:
        world.pass_(stop_after)
        if world.record.swap is None:
            # Between swaps every Service selects production, and production is one whole set.
            assert set(world.selected) <= {world.record.production}
        world.tick()
    assert world.record.production == Slot.GREEN and world.record.production_revision == NEW
    assert set(world.production.values()) == {NEW} and len(world.production) == replicas
    assert world.selected == [Slot.GREEN] * services
    assert world.record.previous is not None and world.record.previous.revision == OLD


standby_instances = st.dictionaries(
    st.integers(0, 7),
    st.builds(
        lambda o, rev, ready, terminating: InstanceState(
            f"web-green-{o}",
            o,
            rev,
            ready=ready,
            ready_since=LONG_AGO if ready else None,
            updated_at=LONG_AGO,
            terminating=terminating,
        ),
        st.integers(0, 7),
        st.sampled_from([OLD, NEW, "web-other"]),
        st.booleans(),
        st.booleans(),
    ),
    max_size=8,
).map(lambda found: {o: replace(i, ordinal=o) for o, i in found.items()})


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(0, 6),
    others=standby_instances,
    template=st.sampled_from([OLD, NEW, "web-other"]),
    limit=st.one_of(st.none(), st.integers(0, 8)),
    quota_free=st.one_of(st.none(), st.integers(0, 8)),
    production=st.sampled_from(list(Slot)),
)
def test_a_plan_never_half_creates_nor_swaps_to_an_incomplete_set(
    replicas: int,
    others: dict[int, InstanceState],
    template: str,
    limit: int | None,
    quota_free: int | None,
    production: Slot,
) -> None:
    policy = make_policy(mode="Staged", staged={"maxExtraInstances": limit})
    record = StagedRecord(production=production, production_revision=OLD)
    result = plan(
        record, policy=policy, template=template, replicas=replicas, others=others, quota_free=quota_free
    )
    assert set(result.create).isdisjoint(others) and all(o < replicas for o in result.create)
    assert set(result.remove) <= set(others)
    assert not (result.create and result.swap)
    if result.step.reason == StepReason.STAGED_CAPACITY:  # type: ignore[union-attr]
        assert result.create == () and result.remove == ()
    if limit is not None and replicas > limit:
        assert result.create == () and result.swap is None
    if result.swap is not None:
        assert result.swap.to_slot == other_slot(production) and result.swap.revision == template
        assert all(others[o].revision == template and others[o].running for o in range(replicas))
    if result.record.staging is not None:
        assert result.record.staging.slot == other_slot(production)
        created = len(result.create) + sum(
            1 for o, i in others.items() if o < replicas and o not in result.remove
        )
        if quota_free is not None:
            assert len(result.create) <= quota_free + len(result.remove)
        assert created <= replicas + sum(1 for i in others.values() if i.terminating)


@settings(max_examples=200, deadline=None)
@given(others=standby_instances, template=st.sampled_from([OLD, NEW]), replicas=st.integers(0, 5))
def test_asking_again_with_nothing_changed_gives_the_same_plan(
    others: dict[int, InstanceState], template: str, replicas: int
) -> None:
    first = plan(template=template, replicas=replicas, others=others)
    again = plan(first.record, template=template, replicas=replicas, others=others)
    assert again.record == first.record and again.create == first.create and again.remove == first.remove
