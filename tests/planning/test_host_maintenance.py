"""Node maintenance: instances leave cordoned or labelled nodes one batch at a time, UD by UD."""

from __future__ import annotations

import pytest

from scaleset_operator.planning.host_maintenance import NodeState, PlacedInstance, plan_host_maintenance


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
