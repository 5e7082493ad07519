"""Manual mode's walk: it belongs to one update revision, and a new update starts unwalked.

The rule, from DESIGN behaviour 9 and the seed's manual upgrade: "nothing moves until the user walks
the next UD of this update; a new update starts unwalked". A value of spec.walkUpgradeDomain left in
Git is not a walk of the next update.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rollout_sim import NEW, OLD, T0, FleetSim, healthy_fleet, make_policy

from scaleset_operator.planning.batches import StartBatch, StepReason, Wait, next_step
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import RolloutState
from scaleset_operator.planning.walk import (
    Walk,
    WalkAccepted,
    WalkRefusal,
    WalkRefused,
    WalkSource,
    decide_walk,
    effective_walk,
    explain_wait,
    observe_spec,
)

MANUAL = make_policy(
    mode="Manual", rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100}
)


def decide(request: str, **overrides: object) -> object:
    arguments: dict[str, object] = {
        "mode": "Manual",
        "upgrade_domain_count": 3,
        "update_revision": NEW,
        "current_revision": OLD,
        "action": None,
        "walk": None,
        "now": T0,
    }
    arguments.update(overrides)
    return decide_walk(request, **arguments)  # type: ignore[arg-type]


def test_a_walk_counts_for_its_own_revision_only() -> None:
    walk = Walk(NEW, 2, WalkSource.ANNOTATION, T0)
    assert effective_walk(walk, NEW) == 2
    assert effective_walk(walk, "web-newer") is None
    assert effective_walk(None, NEW) is None


def test_the_record_round_trips_through_status() -> None:
    walk = Walk(NEW, 1, WalkSource.SPEC, T0, spec_value=1)
    assert Walk.from_status(walk.to_status()) == walk
    assert Walk.from_status(None) is None and Walk.from_status({}) is None


@pytest.mark.parametrize(
    ("recorded", "spec_value", "walks"),
    [
        (None, None, False),  # nothing set, nothing seen
        (None, 1, True),  # a value never read before: a change (a rollout running under the field goes on)
        (Walk(OLD, 2, WalkSource.SPEC, T0, spec_value=2), 2, False),  # left in Git: not a walk of NEW
        (Walk(OLD, 2, WalkSource.SPEC, T0, spec_value=2), 0, True),  # changed: walks NEW to 0
        (Walk(OLD, 2, WalkSource.SPEC, T0, spec_value=2), None, True),  # removed: walks nothing
        (Walk(NEW, 1, WalkSource.ANNOTATION, T0, spec_value=2), 2, False),  # the annotation's walk stays
    ],
)
def test_only_a_change_of_spec_walk_upgrade_domain_walks_the_update_revision(
    recorded: Walk | None, spec_value: int | None, walks: bool
) -> None:
    observed = observe_spec(recorded, spec_value, NEW, T0)
    if not walks:
        assert observed is None
        return
    assert observed == Walk(NEW, spec_value, WalkSource.SPEC, T0, spec_value)


@pytest.mark.parametrize(
    ("request_text", "overrides", "reason"),
    [
        ("1", {"mode": "Rolling"}, WalkRefusal.NOT_MANUAL),
        ("one", {}, WalkRefusal.INVALID),
        ("-1", {}, WalkRefusal.INVALID),
        ("3", {}, WalkRefusal.INVALID),  # 3 upgrade domains: 0 to 2
        ("1", {"action": "Rollback"}, WalkRefusal.ACTION_IN_PROGRESS),
        ("1", {"current_revision": NEW}, WalkRefusal.NO_UPGRADE),
        ("1@web-older", {}, WalkRefusal.OTHER_REVISION),
    ],
)
def test_a_walk_is_refused_with_one_sentence_naming_why(
    request_text: str, overrides: dict[str, object], reason: WalkRefusal
) -> None:
    decision = decide(request_text, **overrides)
    assert isinstance(decision, WalkRefused) and decision.reason == reason
    assert decision.message.endswith(".") and decision.message.count(". ") <= 1


@pytest.mark.parametrize("request_text", ["1", f"1@{NEW}", f" 1 @ {NEW} "])
def test_a_walk_of_the_update_revision_is_recorded_for_it(request_text: str) -> None:
    earlier = Walk(OLD, 2, WalkSource.SPEC, T0 - timedelta(days=1), spec_value=2)
    decision = decide(request_text, walk=earlier)
    assert isinstance(decision, WalkAccepted)
    # The spec value last read is kept: a walk by annotation is not a change of spec.walkUpgradeDomain.
    assert decision.walk == Walk(NEW, 1, WalkSource.ANNOTATION, T0, spec_value=2)
    assert decision.message == f"Upgrade domains 0..1 of {NEW} may be updated."


def test_the_wait_names_the_next_domain_the_command_and_a_walk_of_an_earlier_update() -> None:
    instances = healthy_fleet(6, OLD)
    walk = Walk(OLD, 2, WalkSource.SPEC, T0, spec_value=2)
    step = next_step(
        replicas=6,
        upgrade_domain_count=3,
        walk_upgrade_domain=effective_walk(walk, NEW),
        paused=False,
        policy=MANUAL,
        update_revision=NEW,
        instances=instances,
        rollout=RolloutState(),
        now=T0,
    )
    told = explain_wait(step, walk, NEW, 3, list(range(6)), "web")
    assert isinstance(told, Wait) and told.reason == StepReason.WAITING_FOR_WALK
    assert told.message == (
        f"Manual mode: no upgrade domain of {NEW} is walked yet; upgrade domain 0 waits for a walk "
        f"(scaleset walk web 0, or kubectl annotate scaleset web fleet.scaleset.dev/walk=0@{NEW}). "
        f"The walk to upgrade domain 2 was for {OLD}: a new update starts unwalked."
    )


def test_the_second_upgrade_waits_at_domain_0_after_the_first_was_walked_to_the_end() -> None:
    sim = FleetSim(6, MANUAL, upgrade_domain_count=3, update_revision=NEW)
    walk = observe_spec(None, 2, NEW, T0)  # the user walks the first update to its last domain
    sim.walk_upgrade_domain = effective_walk(walk, NEW)
    for _ in range(10):
        sim.reconcile()
        for ordinal in range(6):
            sim.become_ready(ordinal)
        sim.now += timedelta(seconds=5)
    assert {i.revision for i in sim.instances.values()} == {NEW}

    # The next template: spec.walkUpgradeDomain is still 2 in Git, so nothing is walked for it.
    newer = "web-newer"
    assert observe_spec(walk, 2, newer, sim.now) is None
    sim.update_revision, sim.rollout = newer, RolloutState()
    sim.walk_upgrade_domain = effective_walk(walk, newer)
    step = sim.reconcile()
    assert isinstance(step, Wait) and step.reason == StepReason.WAITING_FOR_WALK
    assert not any(i.revision == newer for i in sim.instances.values())

    # Walked again, for this revision: upgrade domain 0 goes, and only it.
    accepted = decide("0", update_revision=newer, current_revision=NEW, walk=walk)
    assert isinstance(accepted, WalkAccepted)
    sim.walk_upgrade_domain = effective_walk(accepted.walk, newer)
    sim.reconcile()
    moved = {o for o, i in sim.instances.items() if i.revision == newer}
    assert moved and {upgrade_domain_of(o, 3) for o in moved} == {0}


# --------------------------------------------------------------------------- the property

events = st.lists(
    st.one_of(
        st.tuples(st.just("template"), st.none() | st.integers(0, 4)),  # apply, maybe with a spec value
        st.tuples(st.just("spec"), st.none() | st.integers(0, 4)),
        st.tuples(st.just("annotate"), st.integers(0, 4), st.booleans()),  # name the revision or not
        st.tuples(st.just("annotate-old"), st.integers(0, 4)),  # a walk that names an earlier revision
        st.tuples(
            st.just("time"),
        ),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(replicas=st.integers(1, 10), count=st.integers(1, 5), history=events)
def test_no_instance_moves_to_a_revision_past_what_was_walked_for_that_revision(
    replicas: int, count: int, history: list[tuple[object, ...]]
) -> None:
    """Whatever the user does (spec values applied again or changed, with or without a template
    change, walks by annotation naming this revision, none, or an earlier one), an instance is on an
    update revision only in a domain the user walked for that very revision."""
    sim = FleetSim(replicas, MANUAL, upgrade_domain_count=count, update_revision=OLD)
    revisions = [OLD]
    walk: Walk | None = None
    spec_value: int | None = None
    released: dict[str, int] = {}  # the highest domain walked for each revision, by the user's acts

    def record(new: Walk | None) -> None:
        nonlocal walk
        if new is None:
            return
        walk = new
        if new.upgrade_domain is not None:
            released[new.revision] = max(released.get(new.revision, -1), new.upgrade_domain)

    for event in history:
        kind = event[0]
        if kind == "template":
            revisions.append(f"web-r{len(revisions)}")
            sim.update_revision, sim.rollout = revisions[-1], RolloutState()
        if kind in ("template", "spec"):
            value = event[1]
            spec_value = None if value is None else min(int(value), count - 1)  # type: ignore[call-overload]
            record(observe_spec(walk, spec_value, sim.update_revision, sim.now))
        if kind in ("annotate", "annotate-old"):
            domain = min(int(event[1]), count - 1)  # type: ignore[call-overload]
            named = revisions[0] if kind == "annotate-old" else sim.update_revision
            text = f"{domain}@{named}" if kind == "annotate-old" or event[2] else str(domain)
            current = OLD if sim.update_revision != OLD else "web-none"
            decision = decide_walk(
                text,
                mode="Manual",
                upgrade_domain_count=count,
                update_revision=sim.update_revision,
                current_revision=current,
                action=None,
                walk=walk,
                now=sim.now,
            )
            if isinstance(decision, WalkAccepted):
                record(decision.walk)
        if kind == "time":
            sim.now += timedelta(minutes=1)
            for ordinal in range(replicas):
                sim.become_ready(ordinal)
        sim.walk_upgrade_domain = effective_walk(walk, sim.update_revision)
        step = sim.reconcile()
        assert not isinstance(step, StartBatch)
        for ordinal, instance in sim.instances.items():
            if instance.revision != OLD and instance.revision == sim.update_revision:
                assert upgrade_domain_of(ordinal, count) <= released.get(instance.revision, -1), (
                    ordinal,
                    instance.revision,
                    released,
                )


def test_a_running_rollout_under_the_field_keeps_walking_its_revision() -> None:
    """A ScaleSet walked with spec.walkUpgradeDomain before walks were recorded keeps its rollout going."""
    observed = observe_spec(None, 1, NEW, T0)
    assert effective_walk(observed, NEW) == 1
    assert observed is not None and replace(observed, at=None).source == WalkSource.SPEC
