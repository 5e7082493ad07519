"""The kubelet simulator against kubesim's API server: pods scheduled, run, restarted and deleted over HTTP."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from kubesim.cluster import Cluster
from kubesim.faults import FaultPlan
from kubesim.kubelet import Kubelet
from kubesim.testing import kubesim_only

pytestmark = kubesim_only(
    "the kubelet simulator on the scheduling, claim binding and fault injection of a kubesim of its own; "
    "on the testbed it runs under tests/integration"
)

T = TypeVar("T")
# A simulated minute passes in 0.3 real seconds.
TIME_SCALE = 200.0
NS = "default"


class Api:
    """Just enough of a Kubernetes client for these tests."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def request(self, method: str, path: str, body: Any = None, patch: bool = False) -> tuple[int, Any]:
        headers = {"Content-Type": "application/merge-patch+json" if patch else "application/json"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None, patch: bool = False) -> Any:
        for _ in range(50):
            status, answer = await self.request(method, path, body, patch)
            # Injected faults (see test_the_kubelet_rides_out_api_faults) are retried like a client would.
            if status not in (429, 500, 503, 504) and "injected fault" not in str(answer):
                break
            await asyncio.sleep(0.01)
        assert status < 300, (method, path, status, answer)
        return answer

    async def pod(self, name: str) -> dict[str, Any] | None:
        status, answer = await self.request("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
        return answer if status == 200 else None

    async def create_pod(self, name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": list(containers) or [{"name": "app", "image": "app:v1"}], **spec},
        }
        return dict(await self.ok("POST", f"/api/v1/namespaces/{NS}/pods", body))

    async def create_claim(self, name: str, size: str = "2Gi") -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        }
        return dict(await self.ok("POST", f"/api/v1/namespaces/{NS}/persistentvolumeclaims", body))


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def condition(pod: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for entry in ((pod or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return dict(entry)
    return {}


def is_ready(pod: dict[str, Any] | None) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def container_status(pod: dict[str, Any] | None, name: str = "app") -> dict[str, Any]:
    for entry in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if entry["name"] == name:
            return dict(entry)
    return {}


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(time_scale=TIME_SCALE) as running:
        yield running


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=cluster.ssl_context or True)
    ) as session:
        yield Api(cluster.url, session)


def kubelet_of(cluster: Cluster) -> Kubelet:
    assert isinstance(cluster.kubelet, Kubelet)
    return cluster.kubelet


async def ready_pod(api: Api, name: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        pod = await api.pod(name)
        return pod if is_ready(pod) else None

    return await eventually(probe, f"pod {name} to be Ready")


async def test_nodes_register_ready_with_capacity_and_addresses(api: Api) -> None:
    nodes = (await api.ok("GET", "/api/v1/nodes"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["kubesim-node-0", "kubesim-node-1", "kubesim-node-2"]
    for index, node in enumerate(nodes):
        status = node["status"]
        assert condition(node, "Ready")["status"] == "True"
        assert status["capacity"]["pods"] and status["allocatable"]["cpu"]
        assert {"type": "InternalIP", "address": f"127.0.1.{index + 1}"} in status["addresses"]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == node["metadata"]["name"]
    lease = await api.ok(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/kubesim-node-0"
    )
    assert lease["spec"]["holderIdentity"] == "kubesim-node-0"


async def test_pods_are_spread_over_nodes_and_get_distinct_loopback_ips(api: Api) -> None:
    for i in range(6):
        await api.create_pod(f"web-{i}")
    pods = [await ready_pod(api, f"web-{i}") for i in range(6)]
    nodes = [p["spec"]["nodeName"] for p in pods]
    assert sorted(nodes) == sorted(["kubesim-node-0", "kubesim-node-1", "kubesim-node-2"] * 2)
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 6
    assert all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("127.1.0.0/16") for ip in ips)
    for pod in pods:
        assert pod["status"]["hostIP"] == f"127.0.1.{int(pod['spec']['nodeName'][-1]) + 1}"
        assert pod["status"]["phase"] == "Running"
        assert condition(pod, "PodScheduled")["status"] == "True"
        status = container_status(pod)
        assert status["ready"] and status["started"] and "running" in status["state"]


async def test_a_test_can_serve_on_a_pod_ip(api: Api) -> None:
    await api.create_pod("server")
    pod = await ready_pod(api, "server")
    with socket.socket() as listener:
        listener.bind((pod["status"]["podIP"], 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection((pod["status"]["podIP"], port), timeout=2):
            pass


async def test_a_pod_naming_its_node_runs_there(api: Api) -> None:
    await api.create_pod("pinned", nodeName="kubesim-node-2")
    pod = await ready_pod(api, "pinned")
    assert pod["spec"]["nodeName"] == "kubesim-node-2"
    assert pod["status"]["hostIP"] == "127.0.1.3"


async def test_pod_fitting_no_node_stays_pending_until_a_node_is_labelled(api: Api) -> None:
    await api.create_pod("picky", nodeSelector={"disk": "ssd"})

    async def unschedulable() -> dict[str, Any] | None:
        scheduled = condition(await api.pod("picky"), "PodScheduled")
        return scheduled if scheduled.get("reason") == "Unschedulable" else None

    scheduled = await eventually(unschedulable, "the pod to be reported unschedulable")
    assert scheduled["status"] == "False"
    assert "didn't match Pod's node affinity/selector" in scheduled["message"]
    await api.ok(
        "PATCH", "/api/v1/nodes/kubesim-node-1", {"metadata": {"labels": {"disk": "ssd"}}}, patch=True
    )
    pod = await ready_pod(api, "picky")
    assert pod["spec"]["nodeName"] == "kubesim-node-1"


async def test_readiness_probe_delays_ready_after_running(api: Api) -> None:
    probe = {"httpGet": {"path": "/", "port": 8080}, "initialDelaySeconds": 60, "periodSeconds": 10}
    await api.create_pod("slow", {"name": "app", "image": "app:v1", "readinessProbe": probe})

    async def running_unready() -> dict[str, Any] | None:
        pod = await api.pod("slow")
        return pod if container_status(pod).get("started") and not is_ready(pod) else None

    await eventually(running_unready, "the container to run while still unready")
    pod = await ready_pod(api, "slow")
    started = container_status(pod)["state"]["running"]["startedAt"]
    assert condition(pod, "Ready")["lastTransitionTime"] >= started


async def test_crashlooping_instance_restarts_with_backoff_and_never_becomes_ready(api: Api) -> None:
    await api.create_pod("crashy", {"name": "app", "image": "app:v3-crashloop"})

    async def backing_off() -> dict[str, Any] | None:
        status = container_status(await api.pod("crashy"))
        waiting = status.get("state", {}).get("waiting", {})
        return (
            status
            if status.get("restartCount", 0) >= 3 and waiting.get("reason") == "CrashLoopBackOff"
            else None
        )

    status = await eventually(backing_off, "three restarts and a CrashLoopBackOff")
    assert status["lastState"]["terminated"]["exitCode"] == 1
    pod = await api.pod("crashy")
    assert pod is not None and pod["status"]["phase"] == "Running"
    assert not is_ready(pod)


async def test_in_place_image_change_restarts_the_container_and_keeps_ip_and_temp_disk(
    api: Api, cluster: Cluster
) -> None:
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 10}
    await api.create_pod(
        "vm-0",
        {"name": "app", "image": "app:v1", "readinessProbe": probe},
        {"name": "agent", "image": "agent:v1"},
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    before = await ready_pod(api, "vm-0")
    temp_disk = kubelet_of(cluster).volume_identities(NS, "vm-0")["scratch"]
    patch = {"spec": {"containers": [{"name": "app", "image": "app:v2-ready-after-30s"}]}}
    # A strategic merge patch, as kubectl sends: containers merge by name.
    await _strategic_patch(api, "vm-0", patch)

    async def unready_on_new_image() -> dict[str, Any] | None:
        pod = await api.pod("vm-0")
        status = container_status(pod)
        return pod if status.get("image") == "app:v2-ready-after-30s" and not is_ready(pod) else None

    await eventually(unready_on_new_image, "readiness to drop on the new image")
    after = await ready_pod(api, "vm-0")
    assert container_status(after)["restartCount"] == 1
    assert container_status(after, "agent")["restartCount"] == 0
    assert container_status(after)["imageID"] != container_status(before)["imageID"]
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert kubelet_of(cluster).volume_identities(NS, "vm-0")["scratch"] == temp_disk


async def _strategic_patch(api: Api, name: str, patch: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    async with api.session.patch(
        f"{api.url}/api/v1/namespaces/{NS}/pods/{name}", json=patch, headers=headers
    ) as r:
        assert r.status == 200, await r.text()


async def test_pod_waits_for_its_claim_which_is_bound_to_a_new_volume(api: Api, cluster: Cluster) -> None:
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data-vm-0"}}]
    await api.create_pod("vm-0", volumes=volumes)

    async def waiting_for_claim() -> dict[str, Any] | None:
        scheduled = condition(await api.pod("vm-0"), "PodScheduled")
        return scheduled if "not found" in scheduled.get("message", "") else None

    scheduled = await eventually(waiting_for_claim, "the pod to wait for its claim")
    assert scheduled["message"] == '0/3 nodes are available: persistentvolumeclaim "data-vm-0" not found.'
    claim = await api.create_claim("data-vm-0", size="5Gi")
    await ready_pod(api, "vm-0")
    bound = await api.ok("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-vm-0")
    volume_name = f"pvc-{claim['metadata']['uid']}"
    assert bound["spec"]["volumeName"] == volume_name
    assert bound["status"]["phase"] == "Bound"
    assert bound["status"]["capacity"] == {"storage": "5Gi"}
    volume = await api.ok("GET", f"/api/v1/persistentvolumes/{volume_name}")
    assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert volume["spec"]["capacity"] == {"storage": "5Gi"}
    assert kubelet_of(cluster).volume_identities(NS, "vm-0") == {"data": volume_name}


async def test_deleting_a_claim_deletes_its_provisioned_volume(api: Api) -> None:
    claim = await api.create_claim("scratch-claim")
    volume_path = f"/api/v1/persistentvolumes/pvc-{claim['metadata']['uid']}"

    async def provisioned() -> Any:
        return (await api.request("GET", volume_path))[0] == 200

    await eventually(provisioned, "the volume to be provisioned")
    await api.ok("DELETE", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/scratch-claim")

    async def volume_gone() -> bool:
        return (await api.request("GET", volume_path))[0] == 404

    await eventually(volume_gone, "the volume to be deleted with its claim")


async def test_a_claim_deleted_before_it_is_bound_leaves_no_volume(api: Api) -> None:
    # The provisioner creates the volume, then binds the claim: a claim deleted in between (its last
    # state names no volume) must not leave the volume behind, as the PV controller reclaims it.
    uids = []
    for index in range(20):
        claim = await api.create_claim(f"fleeting-{index}")
        uids.append(claim["metadata"]["uid"])
        await api.ok("DELETE", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/fleeting-{index}")

    async def claims_gone() -> bool:
        _, answer = await api.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims")
        return not [c for c in answer["items"] if c["metadata"]["name"].startswith("fleeting-")]

    await eventually(claims_gone, "the claims to be deleted")

    async def no_volume_left() -> bool:
        _, answer = await api.request("GET", "/api/v1/persistentvolumes")
        left = [v for v in answer["items"] if (v["spec"].get("claimRef") or {}).get("uid") in uids]
        return not left

    # Every volume made for them is gone, and stays gone once the provisioner's retries have run.
    await eventually(no_volume_left, "no volume left for the deleted claims", timeout=30)
    await asyncio.sleep(1.0)
    assert await no_volume_left()


async def test_pod_stuck_waiting_for_a_claim_on_its_node_can_still_be_deleted(api: Api) -> None:
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "never-created"}}]
    await api.create_pod("stuck", nodeName="kubesim-node-0", volumes=volumes)

    async def container_creating() -> dict[str, Any] | None:
        pod = await api.pod("stuck")
        waiting = container_status(pod).get("state", {}).get("waiting", {})
        return pod if waiting.get("reason") == "ContainerCreating" else None

    pod = await eventually(container_creating, "the container to wait for its volume")
    assert pod["status"]["phase"] == "Pending"
    assert "podIP" not in pod["status"]
    await api.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/stuck")

    async def gone() -> bool:
        return await api.pod("stuck") is None

    await eventually(gone, "the pod to be removed")


async def test_reimage_gets_a_new_temp_disk_but_keeps_the_data_disk(api: Api, cluster: Cluster) -> None:
    await api.create_claim("data-vm-0")
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-vm-0"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    await api.create_pod("vm-0", volumes=volumes)
    await ready_pod(api, "vm-0")
    before = kubelet_of(cluster).volume_identities(NS, "vm-0")
    await api.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/vm-0")

    async def gone() -> bool:
        return await api.pod("vm-0") is None

    await eventually(gone, "the old pod to go")
    await api.create_pod("vm-0", volumes=volumes)
    await ready_pod(api, "vm-0")
    after = kubelet_of(cluster).volume_identities(NS, "vm-0")
    assert after["data"] == before["data"]
    assert after["scratch"] != before["scratch"]


async def test_deleted_pod_terminates_within_its_grace_period_then_disappears(api: Api) -> None:
    # The process ignores SIGTERM, so it is killed when the 60s grace period (0.3s real) runs out.
    await api.create_pod("stubborn", {"name": "app", "image": "app:v1-shutdown-after-10m"})
    await ready_pod(api, "stubborn")
    deleted_at = time.monotonic()
    await api.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/stubborn", {"gracePeriodSeconds": 60})
    terminating = await api.pod("stubborn")
    assert terminating is not None and terminating["metadata"].get("deletionTimestamp")

    async def gone() -> bool:
        return await api.pod("stubborn") is None

    await eventually(gone, "the pod to be removed")
    assert time.monotonic() - deleted_at >= 60 / TIME_SCALE * 0.9


async def test_behaviour_set_on_a_live_pod_makes_it_unready(api: Api, cluster: Cluster) -> None:
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 10, "failureThreshold": 3}
    await api.create_pod("vm-3", {"name": "app", "image": "app:v1", "readinessProbe": probe})
    await ready_pod(api, "vm-3")
    kubelet_of(cluster).set_behaviour(NS, "vm-3", "never-ready")

    async def unready() -> dict[str, Any] | None:
        pod = await api.pod("vm-3")
        return pod if not is_ready(pod) else None

    pod = await eventually(unready, "readiness to drop")
    assert "running" in container_status(pod)["state"]
    kubelet_of(cluster).set_behaviour(NS, "vm-3", None)
    await ready_pod(api, "vm-3")


async def test_accessors_refuse_pods_the_kubelet_does_not_run(cluster: Cluster) -> None:
    with pytest.raises(LookupError, match="default/nobody is not running"):
        kubelet_of(cluster).volume_identities(NS, "nobody")


async def test_many_pods_all_become_ready(api: Api) -> None:
    count = 100
    await asyncio.gather(*(api.create_pod(f"fleet-{i}") for i in range(count)))

    async def all_ready() -> bool:
        await asyncio.sleep(0.05)  # listing every pod is the expensive part: look less often
        pods = (await api.ok("GET", f"/api/v1/namespaces/{NS}/pods"))["items"]
        return sum(1 for p in pods if is_ready(p)) == count

    await eventually(all_ready, f"{count} pods to be Ready", timeout=20)
    pods = (await api.ok("GET", f"/api/v1/namespaces/{NS}/pods"))["items"]
    assert len({p["status"]["podIP"] for p in pods}) == count


async def test_the_kubelet_rides_out_api_faults() -> None:
    faults = FaultPlan(
        error_rates={"create": 0.25, "patch": 0.25, "delete": 0.25, "list": 0.1},
        watch_disconnect_every=0.25,
    )
    async with (
        Cluster(time_scale=TIME_SCALE, faults=faults) as faulty,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=faulty.ssl_context or True)) as session,
    ):
        api = Api(faulty.url, session)
        await api.create_claim("data-vm-0")
        volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data-vm-0"}}]
        await api.create_pod("vm-0", volumes=volumes)
        for i in range(1, 4):
            await api.create_pod(f"vm-{i}")
        for i in range(4):
            await ready_pod(api, f"vm-{i}")
        await api.ok("DELETE", f"/api/v1/namespaces/{NS}/pods/vm-0")

        async def gone() -> bool:
            return await api.pod("vm-0") is None

        await eventually(gone, "the deleted pod to go")
        assert sum(faulty.faults.injected.values()) > 0
