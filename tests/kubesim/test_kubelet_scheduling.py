"""Node choice and pod addresses in the kubelet simulator, with no server."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kubesim.scheduling import NodeView, PodIPPool, choose_node, host_ip, node_fits

NODES = [
    NodeView("kubesim-node-0", {"zone": "a", "disk": "ssd"}),
    NodeView("kubesim-node-1", {"zone": "b"}),
    NodeView("kubesim-node-2", {"zone": "c", "disk": "ssd"}),
]


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}], **spec}}


def test_pods_go_to_the_least_loaded_node_first_node_on_ties() -> None:
    assert choose_node(pod(), NODES, {}) == ("kubesim-node-0", "")
    assert choose_node(pod(), NODES, {"kubesim-node-0": 1}) == ("kubesim-node-1", "")
    assert choose_node(pod(), NODES, {"kubesim-node-0": 2, "kubesim-node-1": 2, "kubesim-node-2": 1})[0] == (
        "kubesim-node-2"
    )


def test_successive_pods_spread_round_robin() -> None:
    load: dict[str, int] = {}
    chosen = []
    for _ in range(6):
        node, _ = choose_node(pod(), NODES, load)
        assert node is not None
        load[node] = load.get(node, 0) + 1
        chosen.append(node[-1])
    assert chosen == list("012012")


def test_node_selector_must_match_node_labels() -> None:
    assert choose_node(pod(nodeSelector={"disk": "ssd"}), NODES, {"kubesim-node-0": 5})[0] == "kubesim-node-2"
    node, message = choose_node(pod(nodeSelector={"gpu": "yes"}), NODES, {})
    assert node is None
    assert message == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def test_required_node_affinity_is_honoured() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "c"]}]},
                ]
            }
        }
    }
    assert [n.name for n in NODES if node_fits(pod(affinity=affinity), n)] == [
        "kubesim-node-1",
        "kubesim-node-2",
    ]
    not_ssd = {"key": "disk", "operator": "DoesNotExist"}
    affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ].append(not_ssd)
    assert [n.name for n in NODES if node_fits(pod(affinity=affinity), n)] == ["kubesim-node-1"]


def test_cordoned_nodes_take_no_new_pods() -> None:
    nodes = [NodeView("kubesim-node-0", unschedulable=True), NodeView("kubesim-node-1")]
    assert choose_node(pod(), nodes, {"kubesim-node-1": 9})[0] == "kubesim-node-1"
    node, message = choose_node(pod(), nodes[:1], {})
    assert node is None
    assert message == "0/1 nodes are available: 1 node(s) were unschedulable."


def test_pod_ips_are_distinct_loopback_addresses() -> None:
    pool = PodIPPool()
    addresses = {pool.allocate(f"pod-{i}") for i in range(600)}
    assert len(addresses) == 600
    for address in addresses:
        parsed = ipaddress.IPv4Address(address)
        assert parsed in ipaddress.IPv4Network("127.1.0.0/16")
        assert parsed.packed[-1] not in (0, 255)


def test_a_pod_keeps_its_address_and_a_released_one_is_not_reused_at_once() -> None:
    pool = PodIPPool()
    first = pool.allocate("a")
    assert pool.allocate("a") == first
    pool.release("a")
    assert pool.allocate("b") != first
    assert pool.ip_of("a") is None


def test_a_preferred_free_address_is_honoured() -> None:
    pool = PodIPPool()
    taken = pool.allocate("a")
    assert pool.allocate("b", preferred="127.1.7.7") == "127.1.7.7"
    assert pool.allocate("c", preferred=taken) != taken
    assert pool.allocate("d", preferred="10.0.0.1").startswith("127.1.")


def test_exhausted_pool_says_so() -> None:
    pool = PodIPPool(ipaddress.IPv4Network("127.1.0.0/30"))
    pool.allocate("a")
    pool.allocate("b")
    with pytest.raises(RuntimeError, match="no free address"):
        pool.allocate("c")


def test_node_addresses_are_per_node_loopback_addresses() -> None:
    assert [host_ip(i) for i in range(3)] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
