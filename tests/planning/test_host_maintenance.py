"""Node maintenance: instances leave cordoned or labelled nodes one batch at a time, UD by UD; node
freezes are told to their instances, inside a Host window when one applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.api.models import MaintenanceConfiguration, MaintenanceScope
from scaleset_operator.planning.host_maintenance import (
    FreezeGate,
    FreezePlan,
    FreezingInstance,
    NodeState,
    PlacedInstance,
    freeze_may_proceed,
    gate_freezes,
    plan_freeze,
    plan_host_maintenance,
)
from scaleset_operator.planning.maintenance import AssignedMaintenance, assign, gate_batch, may_start


def fleet(placement: dict[str, str | None], domains: int = 3) -> list[PlacedInstance]:
    return [
        PlacedInstance(name, int(name.split("-")[1]), int(name.split("-")[1]) % domains, node)
        for name, node in placement.items()
    ]


NODES = [NodeState("n1"), NodeState("n2", maintenance="pending"), NodeState("n3", cordoned=True)]


def test_instances_on_nodes_under_maintenance_leave_lowest_upgrade_domain_first() -> None:
    instances = fleet({"web-0": "n1", "web-1": "n2", "web-2": "n3", "web-4": "n2", "web-5": "n3"})
    plan = plan_host_maintenance(NODES, instances, batch_size=5)
    assert plan.redeploy == ("web-1", "web-4")  # upgrade domain 1; web-0 is on a healthy node
    assert plan.waiting == ("web-1", "web-4", "web-2", "web-5")
    assert plan.nodes_ready == ()


def test_batch_never_exceeds_the_policy_batch_size() -> None:
    instances = fleet({"web-1": "n2", "web-4": "n2", "web-7": "n2"})
    assert plan_host_maintenance(NODES, instances, batch_size=2).redeploy == ("web-1", "web-4")


def test_no_new_batch_while_a_move_is_in_flight() -> None:
    instances = fleet({"web-1": "n2", "web-2": "n3"})
    assert plan_host_maintenance(NODES, instances, batch_size=1, moving={"web-4"}).redeploy == ()


def test_labelled_node_is_ready_once_empty_but_cordoned_node_gets_no_label() -> None:
    instances = fleet({"web-0": "n1", "web-2": None})
    plan = plan_host_maintenance(NODES, instances, batch_size=1)
    assert plan.redeploy == ()
    assert plan.nodes_ready == ("n2",)


def test_node_already_ready_is_not_reported_again() -> None:
    plan = plan_host_maintenance([NodeState("n2", maintenance="ready")], fleet({"web-1": "n2"}), batch_size=1)
    assert plan == plan.__class__((), (), ())


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        plan_host_maintenance(NODES, [], batch_size=0)


node_states = st.builds(
    NodeState,
    name=st.sampled_from(["n0", "n1", "n2", "n3"]),
    cordoned=st.booleans(),
    maintenance=st.sampled_from([None, "pending", "ready"]),
)


@given(
    st.lists(node_states, max_size=4, unique_by=lambda node: node.name),
    st.dictionaries(st.integers(0, 20), st.sampled_from(["n0", "n1", "n2", "n3", None]), max_size=15),
    st.integers(1, 5),
    st.integers(1, 5),
)
def test_a_host_batch_is_one_domain_lowest_first_and_no_larger_than_the_policy(
    nodes: list[NodeState], placement: dict[int, str | None], batch_size: int, domains: int
) -> None:
    instances = [PlacedInstance(f"web-{o}", o, o % domains, node) for o, node in placement.items()]
    plan = plan_host_maintenance(nodes, instances, batch_size)
    affected = {node.name for node in nodes if node.under_maintenance}
    on_affected = [i for i in instances if i.node in affected]
    assert len(plan.redeploy) <= batch_size
    assert set(plan.waiting) == {i.name for i in on_affected}
    assert bool(plan.redeploy) == bool(on_affected)
    chosen = [i for i in instances if i.name in plan.redeploy]
    assert len({i.upgrade_domain for i in chosen}) <= 1
    if chosen:
        assert chosen[0].upgrade_domain == min(i.upgrade_domain for i in on_affected)
    occupied = {i.node for i in on_affected}
    assert set(plan.nodes_ready) == {
        n.name for n in nodes if n.maintenance == "pending" and n.name not in occupied
    }


# --------------------------------------------------------------------------- freeze

FREEZE_NODES = [
    NodeState("n1"),
    NodeState("n2", maintenance="freeze"),
    NodeState("n3", maintenance="ready"),
    NodeState("n4", maintenance="freeze", cordoned=True),
    NodeState("n5", maintenance="pending"),
]


def test_instances_on_a_freezing_node_are_told_and_nothing_else_is() -> None:
    plan = plan_freeze(
        FREEZE_NODES,
        [
            FreezingInstance("web-0", "n1"),
            FreezingInstance("web-1", "n2"),
            FreezingInstance("web-2", "n2"),
            FreezingInstance("web-3", "n4"),  # cordoned: moved, not frozen
            FreezingInstance("web-4", "n5"),  # pending: moved, not frozen
            FreezingInstance("web-5", None),
        ],
    )
    assert plan.announce == {"n2": ("web-1", "web-2")}
    assert plan.finished == {}


def test_an_instance_that_agreed_is_not_told_again_while_the_node_freezes_or_the_tool_works() -> None:
    plan = plan_freeze(
        FREEZE_NODES,
        [FreezingInstance("web-1", "n2", frozen_on="n2"), FreezingInstance("web-2", "n3", frozen_on="n3")],
    )
    assert plan.announce == {} and plan.finished == {}


@pytest.mark.parametrize(
    ("node", "frozen_on"),
    [
        ("n1", "n1"),  # the tool took the label away: the freeze is over
        ("n5", "n5"),  # now pending: the instance will be moved
        ("n4", "n4"),  # cordoned
        ("n1", "n3"),  # no longer on the node it agreed for
        ("n1", "gone"),  # the node is gone
    ],
)
def test_a_freeze_is_over_when_the_node_no_longer_freezes_or_the_instance_left_it(
    node: str, frozen_on: str
) -> None:
    plan = plan_freeze(FREEZE_NODES, [FreezingInstance("web-0", node, frozen_on=frozen_on)])
    assert plan.finished == {frozen_on: ("web-0",)}
    assert plan.announce == {}


def test_a_freezing_node_proceeds_only_when_every_instance_on_it_agreed() -> None:
    assert freeze_may_proceed("n2", ["n2", "n2"])
    assert freeze_may_proceed("n2", [])
    assert not freeze_may_proceed("n2", ["n2", None])
    assert not freeze_may_proceed("n2", ["n2", "n3"])


LABELS = st.sampled_from([None, "freeze", "ready", "pending", "other"])


@given(
    nodes=st.lists(st.tuples(LABELS, st.booleans()), min_size=1, max_size=4),
    placement=st.lists(
        st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 4))), min_size=0, max_size=8
    ),
)
def test_freeze_tells_only_instances_on_freezing_nodes_and_ends_only_freezes_no_longer_held(
    nodes: list[tuple[str | None, bool]], placement: list[tuple[int, int | None]]
) -> None:
    states = [NodeState(f"n{i}", cordoned=c, maintenance=label) for i, (label, c) in enumerate(nodes)]
    by_name = {node.name: node for node in states}
    instances = [
        FreezingInstance(f"web-{i}", f"n{on}", None if mark is None else f"n{mark}")
        for i, (on, mark) in enumerate(placement)
    ]
    plan = plan_freeze(states, instances)
    told = {name for names in plan.announce.values() for name in names}
    over = {name for names in plan.finished.values() for name in names}
    assert not told & over
    for instance in instances:
        node = by_name.get(instance.node or "")
        if instance.name in told:
            assert node is not None and node.freezing and instance.frozen_on != node.name
        if instance.name in over:
            assert instance.frozen_on is not None
            still_held = node is not None and not node.cordoned and node.maintenance in ("freeze", "ready")
            assert instance.frozen_on != instance.node or not still_held
        if instance.frozen_on is None and node is not None and node.freezing:
            assert instance.name in told, "an instance on a freezing node is told"


# --------------------------------------------------------------------------- a freeze waits for its Host window

# A Host window every Saturday 22:00-04:00 UTC, from Saturday 2026-11-07; maxDeferral 2 days.
HOST = MaintenanceConfiguration.model_validate(
    {
        "metadata": {"name": "host-nights"},
        "spec": {
            "maintenanceScope": "Host",
            "window": {"startDateTime": "2026-11-07 22:00", "duration": "6h", "recurEvery": "Week Saturday"},
            "maxDeferral": "2d",
        },
    }
)
TUESDAY = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
SATURDAY_NIGHT = datetime(2026, 11, 14, 23, 0, tzinfo=UTC)
FREEZING = FreezePlan({"n2": ("web-1", "web-2"), "n6": ("web-7",)}, {})


def freeze_gate(
    now: datetime, pending_since: datetime | None, started: frozenset[str] = frozenset()
) -> FreezeGate:
    assigned = assign([HOST], {}, {})
    decision = gate_batch(assigned, MaintenanceScope.HOST, now, pending_since or now)
    return gate_freezes(FREEZING, started, decision, pending_since, now)


def test_a_freeze_waits_for_the_host_window_when_one_applies() -> None:
    # Maintenance control exists for workloads that "cannot take even a few seconds of freeze": with a
    # Host configuration, a freeze waits for its window, as a move does.
    gate = freeze_gate(TUESDAY, None)
    assert gate.announce == {}
    assert gate.held == ("n2", "n6") and gate.pending_since == TUESDAY
    assert gate.reason == "WaitingForMaintenanceWindow"
    assert gate.until == datetime(2026, 11, 14, 22, 0, tzinfo=UTC)
    assert "host-nights" in (gate.message or "") and "n2, n6" in (gate.message or "")


def test_a_freeze_goes_inside_the_window_and_past_max_deferral() -> None:
    assert freeze_gate(SATURDAY_NIGHT, TUESDAY).announce == FREEZING.announce
    # Pending since Tuesday noon, maxDeferral 2 days: on Thursday noon it goes outside the window.
    thursday = TUESDAY + timedelta(days=2)
    assert freeze_gate(thursday - timedelta(seconds=1), TUESDAY).held == ("n2", "n6")
    assert freeze_gate(thursday, TUESDAY).announce == FREEZING.announce


def test_a_freeze_already_told_goes_on_when_the_window_closes() -> None:
    gate = freeze_gate(TUESDAY, TUESDAY, started=frozenset({"n2"}))
    assert gate.announce == {"n2": ("web-1", "web-2")} and gate.held == ("n6",)


def test_without_a_host_configuration_a_freeze_is_told_at_once() -> None:
    decision = gate_batch(AssignedMaintenance(), MaintenanceScope.HOST, TUESDAY, TUESDAY)
    gate = gate_freezes(FREEZING, set(), decision, None, TUESDAY)
    assert gate.announce == FREEZING.announce and gate.held == () and gate.pending_since is None


@given(
    hours=st.integers(0, 24 * 30),
    waited=st.integers(0, 24 * 5),
    started=st.sets(st.sampled_from(["n2", "n6"])),
)
def test_a_freeze_not_yet_told_goes_exactly_when_host_work_may_start(
    hours: int, waited: int, started: set[str]
) -> None:
    now = TUESDAY + timedelta(hours=hours)
    pending_since = now - timedelta(hours=waited)
    decision = gate_batch(assign([HOST], {}, {}), MaintenanceScope.HOST, now, pending_since)
    gate = gate_freezes(FREEZING, started, decision, pending_since, now)
    for node in FREEZING.announce:
        told = node in gate.announce
        assert told == (node in started or may_start(decision))
        assert told != (node in gate.held)
        if told:
            assert gate.announce[node] == FREEZING.announce[node]
