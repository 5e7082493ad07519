"""Kubelet simulator: schedules kubesim's pods onto simulated nodes and plays their containers' lives.

It talks to the API server over HTTP as a real kubelet does (list and watch pods, claims and nodes;
bind pods; patch pod status; finalise graceful deletions), so it stays decoupled from the store.
Container lives are computed from behaviour scripts (see behaviour.py) on a simulated clock that
runs `time_scale` times faster than the real one (podlife.py); one timer heap drives every pod.
Node choice and pod addresses are in scheduling.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kubesim.apiclient import RETRY_SECONDS, TRANSPORT_ERRORS, ApiClient, ApiRequestError
from kubesim.behaviour import Behaviour, parse_behaviour
from kubesim.connection import Connection
from kubesim.nodes import NODE_PREFIX, NodeLifecycle
from kubesim.podlife import (
    PodRuntime,
    SimClock,
    claim_names,
    emptydir_identity,
    grace_seconds,
    reference_problem,
)
from kubesim.provisioner import VolumeProvisioner
from kubesim.scheduling import NodeView, PodIPPool, choose_node, host_ip

log = logging.getLogger("kubesim.kubelet")

# At most this many status writes are in flight at once.
WRITE_CONCURRENCY = 16
# How often (real seconds) a container waiting for a Secret or ConfigMap its env names looks again.
REFERENCES_AGAIN_SECONDS = 1.0

T = TypeVar("T")


@dataclass
class _Unscheduled:
    pod: Mapping[str, Any]
    message: str = ""
    since: float = 0.0
    last_sent: dict[str, Any] | None = None


class Kubelet:
    """Simulated nodes and their kubelet, attached to a Kubernetes API server at `base_url`.

    `time_scale` divides every simulated duration (probe periods, pulls, back-offs, grace periods):
    with 60, a simulated minute passes in a real second. `seed` fixes all simulated randomness.

    `base_url` may be a `Connection` (TLS and credentials, from a kubeconfig). Against kubesim the
    kubelet also schedules pods and binds claims; against a real control plane (`schedule_pods` and
    `bind_claims` False) kube-scheduler binds pods, and the kubelet is only the external provisioner of
    the default StorageClass `standard`: it creates a volume pre-bound to each claim waiting for it,
    and the PV controller binds the claim.
    """

    def __init__(
        self,
        base_url: str | Connection,
        nodes: int = 3,
        time_scale: float = 1.0,
        seed: int = 0,
        *,
        schedule_pods: bool = True,
        bind_claims: bool = True,
    ) -> None:
        if nodes < 1:
            raise ValueError("a kubesim cluster needs at least one node")
        self.connection = base_url if isinstance(base_url, Connection) else Connection(base_url)
        self.client = ApiClient(self.connection)
        self.base_url = self.client.base_url
        self.schedule_pods = schedule_pods
        self.bind_claims = bind_claims
        # script_image: behaviours by image reference, read when a container starts or changes image.
        self.image_behaviours: dict[str, Behaviour] = {}
        self.node_names = [f"{NODE_PREFIX}{i}" for i in range(nodes)]
        self.time_scale = float(time_scale)
        self.seed = seed
        self.clock = SimClock(self.time_scale)
        self.node_lifecycle = NodeLifecycle(self.client, self.node_names, self.clock, seed)
        self._loop: asyncio.AbstractEventLoop | None = None

        self._nodes: dict[str, NodeView] = {
            n: NodeView(n, self.node_lifecycle.labels(n)) for n in self.node_names
        }
        self._pool = PodIPPool()
        self._pods: dict[str, PodRuntime] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._unscheduled: dict[str, _Unscheduled] = {}
        self._binding: dict[str, str] = {}
        # Pods per node, running or being bound: kept up to date so scheduling 10,000 pods stays linear.
        self._node_load: dict[str, int] = dict.fromkeys(self.node_names, 0)
        # The images each node has pulled: what a container of imagePullPolicy Never may run there.
        self._node_images: dict[str, set[str]] = {node: set() for node in self.node_names}
        self._binding_supported = True
        self.provisioner = VolumeProvisioner(self.client, bind_claims=bind_claims)
        self.provisioner.on_change = self._on_claim_change
        self._claim_waiters: dict[tuple[str, str], set[str]] = {}

        self._timers: list[tuple[float, int, str]] = []
        self._timer_seq = 0
        self._timer_wake = asyncio.Event()
        self._dirty: dict[str, None] = {}
        # One status write per pod at a time, so an older status can never land after a newer one.
        self._writing: set[str] = set()
        self._write_again: set[str] = set()
        self._dirty_wake = asyncio.Event()
        self._write_slots = asyncio.Semaphore(WRITE_CONCURRENCY)

    # -- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the nodes, then list and watch the cluster; returns once the first lists are in."""
        self._loop = asyncio.get_running_loop()
        # Events and semaphores belong to the loop that uses them: make them on the loop that starts us.
        self._timer_wake = asyncio.Event()
        self._dirty_wake = asyncio.Event()
        self._write_slots = asyncio.Semaphore(WRITE_CONCURRENCY)
        self.client.open()
        try:
            await self.node_lifecycle.start()
            synced = [asyncio.Event() for _ in range(3)]
            self.client.spawn(
                self.client.watch("/api/v1/nodes", self._on_node, self._on_node_list, synced[0])
            )
            await self.provisioner.start(synced[1])
            self.client.spawn(self.client.watch("/api/v1/pods", self._on_pod, self._on_pod_list, synced[2]))
            self.client.spawn(self._run_timers())
            self.client.spawn(self._write_statuses())
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in synced)), timeout=30)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self.client.close()

    def set_behaviour(
        self, namespace: str, name: str, behaviour: Behaviour | str | None, container: str | None = None
    ) -> None:
        """Make a live pod's containers (or one of them) behave differently from now on.

        `behaviour` is a Behaviour, a string in the KUBESIM_BEHAVIOUR grammar, or None to go back to what
        each container's env and image say. Timed clauses count from now. Safe to call from any thread.
        """
        parsed = parse_behaviour(behaviour) if isinstance(behaviour, str) else behaviour
        self._call_in_loop(self._set_behaviour, namespace, name, parsed, container)

    def evict(
        self,
        namespace: str,
        name: str,
        message: str = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi.",
    ) -> None:
        """Evict a live pod as the node's eviction manager does under pressure (or a graceful node
        shutdown): its containers are killed at once and it ends phase Failed, reason Evicted, with a
        DisruptionTarget condition; the pod object stays until someone deletes it. Safe from any thread."""
        self._call_in_loop(self._evict, namespace, name, message)

    def _evict(self, namespace: str, name: str, message: str) -> None:
        runtime = self._runtime(namespace, name)
        runtime.evict(self.clock.now(), message)
        self._touch(runtime)

    def script_image(self, image: str, behaviour: Behaviour | str) -> None:
        """Make every container that runs `image` (from now on, on any pod) behave so, as a tag clause
        would: for a version that must fail while its tag stays a plain version. Its env still wins."""
        self.image_behaviours[image] = parse_behaviour(behaviour) if isinstance(behaviour, str) else behaviour

    def volume_identities(self, namespace: str, name: str) -> dict[str, str]:
        """Volume name -> identity of the storage behind it, for a pod on a simulated node.

        An emptyDir's identity is new for every pod (uid) and kept across in-place container restarts;
        a persistentVolumeClaim's is its PersistentVolume, which outlives the pod. Safe from any thread.
        """
        return self._call_in_loop(lambda: dict(self._runtime(namespace, name).identities))

    def pod_ip(self, namespace: str, name: str) -> str | None:
        """The loopback address of a pod on a simulated node (None before its sandbox exists)."""
        return self._call_in_loop(lambda: self._runtime(namespace, name).pod_ip)

    def now(self) -> float:
        """Simulated seconds since the kubelet started."""
        return self.clock.now()

    # -- threading -----------------------------------------------------------------------------

    def _call_in_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the kubelet's event loop, which may belong to another thread (ThreadedCluster)."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or loop.is_closed():
            return fn(*args)
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn(*args))
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=30)

    def _runtime(self, namespace: str, name: str) -> PodRuntime:
        uid = self._by_name.get((namespace, name))
        runtime = self._pods.get(uid) if uid else None
        if runtime is None:
            raise LookupError(f"pod {namespace}/{name} is not running on a kubesim node")
        return runtime

    def _set_behaviour(
        self, namespace: str, name: str, behaviour: Behaviour | None, container: str | None
    ) -> None:
        runtime = self._runtime(namespace, name)
        runtime.set_behaviour(behaviour, container, self.clock.now())
        self._touch(runtime)

    # -- nodes ---------------------------------------------------------------------------------

    def _on_node_list(self, nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            self._on_node("ADDED", node)

    def _on_node(self, kind: str, node: dict[str, Any]) -> None:
        name = str((node.get("metadata") or {}).get("name", ""))
        if name not in self.node_names:
            return
        if kind == "DELETED":
            view = NodeView(name, {}, unschedulable=True, ready=False)
        else:
            labels = dict((node.get("metadata") or {}).get("labels") or {})
            view = NodeView(name, labels, bool((node.get("spec") or {}).get("unschedulable")))
        if view == self._nodes.get(name):
            return
        self._nodes[name] = view
        # A label change or an uncordon may let a waiting pod fit.
        for uid in list(self._unscheduled):
            self._try_schedule(uid)

    # -- claims and volumes --------------------------------------------------------------------

    def _watch_claims(self, uid: str, namespace: str, claims: Sequence[str]) -> None:
        for claim_name in claims:
            self._claim_waiters.setdefault((namespace, claim_name), set()).add(uid)

    def _unwatch_claims(self, uid: str, namespace: str, claims: Sequence[str]) -> None:
        for claim_name in claims:
            waiters = self._claim_waiters.get((namespace, claim_name))
            if waiters is not None:
                waiters.discard(uid)
                if not waiters:
                    del self._claim_waiters[(namespace, claim_name)]

    def _on_claim_change(self, key: tuple[str, str]) -> None:
        for uid in list(self._claim_waiters.get(key, ())):
            self._claim_changed(uid)

    def _claim_changed(self, uid: str) -> None:
        if uid in self._unscheduled:
            self._try_schedule(uid)
        elif (runtime := self._pods.get(uid)) is not None and runtime.sandbox_at is None:
            self._try_sandbox(runtime)

    # -- pods: scheduling ----------------------------------------------------------------------

    def _on_pod_list(self, pods: list[dict[str, Any]]) -> None:
        present = {str((p.get("metadata") or {}).get("uid")) for p in pods}
        for uid in [u for u in [*self._pods, *self._unscheduled] if u not in present]:
            self._forget(uid)
        for pod in pods:
            self._on_pod("MODIFIED", pod)

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        uid = str(meta.get("uid", ""))
        if kind == "DELETED":
            self._forget(uid)
            return
        runtime = self._pods.get(uid)
        if runtime is not None:
            self._on_running_pod(runtime, pod)
            return
        node = str(spec.get("nodeName") or "")
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            if meta.get("deletionTimestamp") and node in self._nodes:
                self.client.spawn(self._delete_pod(uid, str(meta.get("namespace")), str(meta.get("name"))))
            return
        if not node:
            if not self.schedule_pods:
                return  # the scheduler's
            if meta.get("deletionTimestamp"):
                # Never scheduled, and now going: the API server removes it without a kubelet.
                self._forget(uid)
                return
            entry = self._unscheduled.setdefault(uid, _Unscheduled(pod, since=self.clock.now()))
            entry.pod = pod
            self._try_schedule(uid)
            return
        self._end_binding(uid)
        unscheduled = self._unscheduled.pop(uid, None)
        if unscheduled is not None:
            self._unwatch_claims(uid, str(meta.get("namespace")), claim_names(pod))
        if node in self._nodes:
            self._admit(pod, node)

    def _start_binding(self, uid: str, node: str) -> None:
        self._binding[uid] = node
        self._node_load[node] += 1

    def _end_binding(self, uid: str) -> bool:
        node = self._binding.pop(uid, None)
        if node is None:
            return False
        self._node_load[node] -= 1
        return True

    def _try_schedule(self, uid: str) -> None:
        entry = self._unscheduled.get(uid)
        if entry is None or uid in self._binding:
            return
        meta = entry.pod.get("metadata") or {}
        namespace = str(meta.get("namespace", "default"))
        claims = claim_names(entry.pod)
        problem = self.provisioner.claims_problem(namespace, claims)
        if problem is not None:
            self._watch_claims(uid, namespace, claims)
            self._mark_unschedulable(uid, entry, f"0/{len(self.node_names)} nodes are available: {problem}.")
            return
        self._unwatch_claims(uid, namespace, claims)
        node, message = choose_node(entry.pod, [self._nodes[n] for n in self.node_names], self._node_load)
        if node is None:
            self._mark_unschedulable(uid, entry, message)
            return
        self._start_binding(uid, node)
        self.client.spawn(self._bind(uid, namespace, str(meta.get("name")), node))

    def _mark_unschedulable(self, uid: str, entry: _Unscheduled, message: str) -> None:
        if entry.message != message:
            entry.message = message
            entry.since = self.clock.now()
            self._mark_dirty(uid)

    async def _bind(self, uid: str, namespace: str, name: str, node: str) -> None:
        """Bind through pods/binding as the scheduler does; fall back to setting spec.nodeName."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        try:
            status, body = 404, dict[str, Any]()
            if self._binding_supported:
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name, "namespace": namespace, "uid": uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                }
                status, body = await self.client.request("POST", path + "/binding", binding)
                if status in (404, 405) and (body.get("details") or {}).get("name") != name:
                    self._binding_supported = False
            if not self._binding_supported:
                patch = {"metadata": {"uid": uid}, "spec": {"nodeName": node}}
                status, body = await self.client.request("PATCH", path, patch, "application/merge-patch+json")
            if status >= 300:
                raise ApiRequestError("BIND", path, status, body)
        except (ApiRequestError, *TRANSPORT_ERRORS) as exc:
            if self._end_binding(uid) and uid in self._unscheduled:
                log.debug("binding %s/%s to %s failed: %s", namespace, name, node, exc)
                # The pod may be gone (its deletion is on the way) or changed; try again shortly.
                self.client.later(RETRY_SECONDS, lambda: self._try_schedule(uid))

    # -- pods: running -------------------------------------------------------------------------

    def _admit(self, pod: Mapping[str, Any], node: str) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        now = self.clock.now()
        runtime = PodRuntime(
            pod,
            node,
            host_ip(self.node_names.index(node)),
            now,
            self.seed,
            self.image_behaviours,
            self._node_images.setdefault(node, set()),
        )
        self._pods[uid] = runtime
        self._node_load[node] += 1
        self._by_name[(runtime.namespace, runtime.name)] = uid
        if runtime.references():
            self.client.spawn(self._read_references(uid))
        if meta.get("deletionTimestamp"):
            runtime.begin_termination(now, 0.0)
        else:
            self._try_sandbox(runtime)
        self._touch(runtime)

    def _try_sandbox(self, runtime: PodRuntime) -> None:
        problem = self.provisioner.claims_problem(runtime.namespace, runtime.claims)
        if problem is not None:
            # Like a kubelet waiting for volumes to attach: the containers stay ContainerCreating.
            self._watch_claims(runtime.uid, runtime.namespace, runtime.claims)
            return
        self._unwatch_claims(runtime.uid, runtime.namespace, runtime.claims)
        identities: dict[str, str] = {}
        for volume in (runtime.pod.get("spec") or {}).get("volumes") or []:
            name = str(volume.get("name"))
            if "emptyDir" in volume:
                identities[name] = emptydir_identity(runtime.uid, name)
            elif claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
                bound = self.provisioner.claims[(runtime.namespace, str(claim))]
                identities[name] = str((bound.get("spec") or {}).get("volumeName"))
        previous = (runtime.pod.get("status") or {}).get("podIP")
        pod_ip = self._pool.allocate(runtime.uid, preferred=str(previous) if previous else None)
        runtime.start_sandbox(self.clock.now(), pod_ip, identities)
        self._touch(runtime)

    async def _read_references(self, uid: str) -> None:
        """Read the Secrets and ConfigMaps the pod's containers' env names, as the kubelet does when it
        makes a container; a container that lacks one waits (CreateContainerConfigError) and this runs
        again until it is there."""
        runtime = self._pods.get(uid)
        if runtime is None or runtime.terminating:
            return
        references = runtime.references()
        wanted = {(ref.kind, ref.name) for refs in references.values() for ref in refs}
        found: dict[tuple[str, str], dict[str, Any] | None] = {}
        try:
            for kind, name in sorted(wanted):
                plural = "secrets" if kind == "secret" else "configmaps"
                code, body = await self.client.request(
                    "GET", f"/api/v1/namespaces/{runtime.namespace}/{plural}/{name}"
                )
                if code == 404:
                    found[(kind, name)] = None
                elif code < 300:
                    found[(kind, name)] = body
                else:
                    raise ApiRequestError("GET", plural, code, body)
        except (ApiRequestError, *TRANSPORT_ERRORS) as exc:
            log.debug("reading the references of pod %s/%s failed: %s", runtime.namespace, runtime.name, exc)
            self.client.later(REFERENCES_AGAIN_SECONDS, lambda: self.client.spawn(self._read_references(uid)))
            return
        if self._pods.get(uid) is not runtime:
            return
        errors = {
            name: reference_problem(refs, runtime.namespace, found) for name, refs in references.items()
        }
        runtime.set_reference_errors(errors, self.clock.now())
        self._touch(runtime)
        if any(errors.values()):
            self.client.later(REFERENCES_AGAIN_SECONDS, lambda: self.client.spawn(self._read_references(uid)))

    def _on_running_pod(self, runtime: PodRuntime, pod: dict[str, Any]) -> None:
        now = self.clock.now()
        runtime.update_spec(pod, now)
        if (pod.get("metadata") or {}).get("deletionTimestamp") and not runtime.terminating:
            runtime.begin_termination(now, grace_seconds(pod))
        self._touch(runtime)

    def _touch(self, runtime: PodRuntime) -> None:
        """Bring a pod up to the present, queue its status write and set its next wake-up."""
        runtime.advance(self.clock.now())
        self._mark_dirty(runtime.uid)
        at = runtime.next_event()
        if at is not None and at != runtime.wake_at:
            runtime.wake_at = at
            self._timer_seq += 1
            if not self._timers or at < self._timers[0][0]:
                self._timer_wake.set()
            heapq.heappush(self._timers, (at, self._timer_seq, runtime.uid))
        if runtime.finished and not runtime.delete_requested:
            runtime.delete_requested = True
            self.client.spawn(self._finalise(runtime))

    async def _run_timers(self) -> None:
        """One heap of wake-ups for every pod; stale entries are skipped rather than removed."""
        assert self._loop is not None
        while True:
            if not self._timers:
                await self._timer_wake.wait()
                self._timer_wake.clear()
                continue
            at = self._timers[0][0]
            delay = self.clock.real_delay(at)
            if delay > 0:
                handle = self._loop.call_later(delay, self._timer_wake.set)
                await self._timer_wake.wait()
                handle.cancel()
                self._timer_wake.clear()
                continue
            handled = 0
            now = self.clock.now()
            while self._timers and self._timers[0][0] <= now and handled < 1000:
                at, _, uid = heapq.heappop(self._timers)
                runtime = self._pods.get(uid)
                if runtime is None or runtime.wake_at != at:
                    continue
                runtime.wake_at = None
                self._touch(runtime)
                handled += 1
            # Let watches and writers run between large batches.
            await asyncio.sleep(0)

    def _forget(self, uid: str) -> None:
        runtime = self._pods.pop(uid, None)
        if runtime is not None:
            self._node_load[runtime.node] -= 1
            self._pool.release(uid)
            self._unwatch_claims(uid, runtime.namespace, runtime.claims)
            if self._by_name.get((runtime.namespace, runtime.name)) == uid:
                del self._by_name[(runtime.namespace, runtime.name)]
        entry = self._unscheduled.pop(uid, None)
        if entry is not None:
            meta = entry.pod.get("metadata") or {}
            self._unwatch_claims(uid, str(meta.get("namespace")), claim_names(entry.pod))
        self._end_binding(uid)
        self._dirty.pop(uid, None)

    async def _finalise(self, runtime: PodRuntime) -> None:
        """Report the containers stopped, then confirm the deletion with a zero grace period."""
        await self._write_status(runtime.uid)
        await self._delete_pod(runtime.uid, runtime.namespace, runtime.name)

    async def _delete_pod(self, uid: str, namespace: str, name: str) -> None:
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            status, body = await self.client.request(
                "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", options
            )
        except TRANSPORT_ERRORS as exc:
            status, body = 0, {"message": str(exc)}
        if status == 404 or (status == 409 and "precondition" in str(body.get("message", "")).lower()):
            # Already gone, or replaced by a new pod of the same name.
            self._forget(uid)
        elif status >= 300 or status == 0:
            log.info(
                "deleting pod %s/%s failed (%s %s); retrying", namespace, name, status, body.get("message")
            )
            self.client.later(RETRY_SECONDS, lambda: self._retry_delete(uid, namespace, name))

    def _retry_delete(self, uid: str, namespace: str, name: str) -> None:
        if uid in self._pods:
            self.client.spawn(self._delete_pod(uid, namespace, name))

    # -- status writes -------------------------------------------------------------------------

    def _mark_dirty(self, uid: str) -> None:
        self._dirty[uid] = None
        self._dirty_wake.set()

    async def _write_statuses(self) -> None:
        """Write queued pod statuses; several changes to one pod between writes become one patch."""
        while True:
            await self._dirty_wake.wait()
            self._dirty_wake.clear()
            batch = list(self._dirty)
            self._dirty.clear()
            await asyncio.gather(*(self._write_status(uid) for uid in batch))

    async def _write_status(self, uid: str) -> None:
        if uid in self._writing:
            self._write_again.add(uid)
            return
        self._writing.add(uid)
        try:
            await self._write_status_now(uid)
        finally:
            self._writing.discard(uid)
            if uid in self._write_again:
                self._write_again.discard(uid)
                self._mark_dirty(uid)

    async def _write_status_now(self, uid: str) -> None:
        runtime = self._pods.get(uid)
        unscheduled = self._unscheduled.get(uid) if runtime is None else None
        if runtime is not None:
            namespace, name = runtime.namespace, runtime.name
            status = runtime.status(self.clock)
            last = runtime.last_sent
        elif unscheduled is not None:
            meta = unscheduled.pod.get("metadata") or {}
            namespace, name = str(meta.get("namespace")), str(meta.get("name"))
            status = self._unschedulable_status(unscheduled)
            last = unscheduled.last_sent
        else:
            return
        if status == last:
            return
        # Merge patch replaces lists whole and leaves absent keys alone, so clear keys no longer reported.
        patch_status: dict[str, Any] = dict(status)
        for key in last or {}:
            patch_status.setdefault(key, None)
        patch = {"metadata": {"uid": uid}, "status": patch_status}
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/status"
        async with self._write_slots:
            try:
                code, body = await self.client.request("PATCH", path, patch, "application/merge-patch+json")
            except TRANSPORT_ERRORS as exc:
                code, body = 0, {"message": str(exc)}
        if 200 <= code < 300:  # 0: no answer (the server is restarting or gone), written again later
            if runtime is not None:
                runtime.last_sent = status
            elif unscheduled is not None:
                unscheduled.last_sent = status
        elif code == 404:
            # Gone: the watch will tell.
            pass
        else:
            # Conflicts (a pod of the same name replaced this one) end when the watch reports the
            # deletion and the pod is forgotten; other failures are transient.
            log.debug("status write for pod %s/%s failed: %s %s", namespace, name, code, body.get("message"))
            self.client.later(RETRY_SECONDS, lambda: self._retry_status(uid))

    def _retry_status(self, uid: str) -> None:
        if uid in self._pods or uid in self._unscheduled:
            self._mark_dirty(uid)

    def _unschedulable_status(self, entry: _Unscheduled) -> dict[str, Any]:
        observed = (entry.pod.get("status") or {}).get("conditions") or []
        scheduled = {
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": None,
            "lastTransitionTime": self.clock.timestamp(entry.since),
            "reason": "Unschedulable",
            "message": entry.message,
        }
        return {
            "phase": "Pending",
            "conditions": [scheduled, *[c for c in observed if c.get("type") != "PodScheduled"]],
        }
