"""Finding the caller's pod by IP, even where the API server ignores the field selector."""

from __future__ import annotations

from typing import Any

from scaleset_operator.imds.instances import Instance, KubeInstanceEvents


class ListOnlyKube:
    """Answers every pod list with all pods, as a server that ignores fieldSelector would."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.queries: list[dict[str, Any]] = []

    def request(
        self, method: str, path: str, query: dict[str, Any] | None = None, **_: Any
    ) -> dict[str, Any]:
        self.queries.append(query or {})
        return {"items": self.pods}


def pod(name: str, ip: str, **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", **metadata},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def test_the_pod_with_the_callers_ip_is_the_instance() -> None:
    kube = ListOnlyKube([pod("web-0", "10.0.0.1"), pod("web-1", "10.0.0.2")])
    events = KubeInstanceEvents(kube)
    assert events.find_instance_by_ip("10.0.0.2") == Instance("shop", "web-1", "10.0.0.2")
    assert kube.queries[0]["fieldSelector"] == "status.podIP=10.0.0.2"


def test_an_address_no_pod_has_is_no_instance() -> None:
    assert (
        KubeInstanceEvents(ListOnlyKube([pod("web-0", "10.0.0.1")])).find_instance_by_ip("10.0.0.9") is None
    )


def test_a_live_pod_wins_over_a_terminating_one_with_the_same_ip() -> None:
    kube = ListOnlyKube(
        [pod("web-0", "10.0.0.1", deletionTimestamp="2026-01-01T00:00:00Z"), pod("web-3", "10.0.0.1")]
    )
    assert KubeInstanceEvents(kube).find_instance_by_ip("10.0.0.1") == Instance("shop", "web-3", "10.0.0.1")
