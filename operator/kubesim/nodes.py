"""The simulated nodes' lifecycle: registering them, renewing their Leases, posting their status.

A loop of its own beside the kubelet's pods (the node status manager and the node lease controller of a
real kubelet), talking to the API server through the kubelet's `ApiClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from kubesim.apiclient import TRANSPORT_ERRORS, ApiClient, ApiRequestError
from kubesim.podlife import SimClock, digest
from kubesim.scheduling import host_ip

log = logging.getLogger("kubesim.kubelet")

NODE_PREFIX = "kubesim-node-"
KUBELET_VERSION = "v1.32.0"
# The node lease is renewed this often (simulated seconds), as the real kubelet does.
LEASE_DURATION = 40
LEASE_RENEW = 10.0
# A node's status is re-posted this often (simulated seconds) so that its heartbeat stays fresh.
NODE_STATUS_EVERY = 60.0


class NodeLifecycle:
    """The nodes `node_names`: registered once, then a heartbeat (Lease renewal, node status) until stopped."""

    def __init__(self, client: ApiClient, node_names: Sequence[str], clock: SimClock, seed: int) -> None:
        self.client = client
        self.node_names = list(node_names)
        self.clock = clock
        self.seed = seed
        self._leases_supported = True

    async def start(self) -> None:
        """Register every node (with its status and Lease), then keep them fresh in the background."""
        for index, name in enumerate(self.node_names):
            await self._register_node(index, name)
        self.client.spawn(self._heartbeat())

    def labels(self, name: str) -> dict[str, str]:
        index = self.node_names.index(name)
        return {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": f"kubesim-zone-{index % 3}",
            "node.kubernetes.io/instance-type": "kubesim.standard",
        }

    def status(self, index: int, name: str) -> dict[str, Any]:
        now = self.clock.timestamp(self.clock.now())
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "1000", "ephemeral-storage": "100Gi"}

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self.clock.timestamp(0),
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                ),
                condition(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
                ),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": host_ip(index)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": str(uuid.UUID(digest("boot", self.seed, name)[:32])),
                "containerRuntimeVersion": "kubesim://1.0.0",
                "kernelVersion": platform.release(),
                "kubeProxyVersion": "",
                "kubeletVersion": KUBELET_VERSION,
                "machineID": digest("machine", name)[:32],
                "operatingSystem": "linux",
                "osImage": "kubesim",
                "systemUUID": str(uuid.UUID(digest("system", name)[:32])),
            },
        }

    async def _register_node(self, index: int, name: str) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": self.labels(name)},
            "spec": {"providerID": f"kubesim://{name}"},
        }
        await self.client.persist("POST", "/api/v1/nodes", node, exists_ok=True)
        await self.client.persist(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": self.status(index, name)},
            "application/merge-patch+json",
        )
        await self._renew_lease(name)

    async def _renew_lease(self, name: str) -> None:
        if not self._leases_supported:
            return
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": self.clock.micro_timestamp(self.clock.now()),
        }
        try:
            status, _ = await self.client.request(
                "PATCH", f"{path}/{name}", {"spec": spec}, "application/merge-patch+json"
            )
            if status == 404:
                lease = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": spec,
                }
                status, body = await self.client.request("POST", path, lease)
                if status == 404 and "namespace" in str(body.get("message", "")).lower():
                    namespace = {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": "kube-node-lease"},
                    }
                    await self.client.request("POST", "/api/v1/namespaces", namespace)
                    status, body = await self.client.request("POST", path, lease)
                if status >= 300 and status != 409:
                    # Leases are a nicety: a server without them still gets node status heartbeats.
                    log.info("node leases unavailable (%s); relying on node status heartbeats", status)
                    self._leases_supported = False
        except TRANSPORT_ERRORS as exc:
            log.debug("lease renewal for %s failed: %s", name, exc)

    async def _heartbeat(self) -> None:
        """Renew node leases and re-post node status, at simulated intervals but never busier than 1/s real."""
        last_status = self.clock.now()
        while not self.client.stopping:
            await asyncio.sleep(max(1.0, LEASE_RENEW / self.clock.time_scale))
            for name in self.node_names:
                await self._renew_lease(name)
            if self.clock.now() - last_status >= NODE_STATUS_EVERY or not self._leases_supported:
                last_status = self.clock.now()
                for index, name in enumerate(self.node_names):
                    with contextlib.suppress(aiohttp.ClientError, ApiRequestError):
                        await self.client.expect(
                            "PATCH",
                            f"/api/v1/nodes/{name}/status",
                            {"status": self.status(index, name)},
                            "application/merge-patch+json",
                        )
