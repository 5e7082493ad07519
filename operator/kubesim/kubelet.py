"""Kubelet simulator: schedules kubesim's pods onto simulated nodes and plays their containers' lives.

It talks to the API server over HTTP as a real kubelet does (list and watch pods, claims and nodes;
bind pods; patch pod status; finalise graceful deletions), so it stays decoupled from the store.
Container lives are computed from behaviour scripts (see behaviour.py) on a simulated clock that
runs `time_scale` times faster than the real one; one timer heap drives every pod.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import heapq
import ipaddress
import json
import logging
import math
import platform
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiohttp

from kubesim.behaviour import (
    BACKOFF_RESET_AFTER,
    Behaviour,
    BehaviourError,
    Probe,
    container_behaviour,
    direct_flips,
    next_flip,
    outcomes_from,
    parse_behaviour,
    probe_flips,
    restart_delay,
    startup_outcome,
    value_at,
)
from kubesim.connection import Connection
from kubesim.images import image_reference_problem

log = logging.getLogger("kubesim.kubelet")

NODE_PREFIX = "kubesim-node-"
POD_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")
KUBELET_VERSION = "v1.32.0"
# Image pulls take between these many simulated seconds.
PULL_SECONDS = (1.0, 2.0)
# The node lease is renewed this often (simulated seconds), as the real kubelet does.
LEASE_DURATION = 40
LEASE_RENEW = 10.0
# A node's status is re-posted this often (simulated seconds) so that its heartbeat stays fresh.
NODE_STATUS_EVERY = 60.0
# At most this many status writes are in flight at once.
WRITE_CONCURRENCY = 16
# Real seconds before a failed write (binding, status, volume, deletion) is tried again.
RETRY_SECONDS = 0.2
# The provisioner name of the simulated storage, and the default StorageClass that uses it, when the
# kubelet leaves binding claims to a real PV controller and acts only as an external provisioner.
PROVISIONER = "kubesim.dev/simulated"
STORAGE_CLASS = "standard"

T = TypeVar("T")
ContainerKind = Literal["init", "sidecar", "app"]
ContainerState = Literal["pending", "pulling", "running", "backoff", "stuck", "terminated", "stopped"]


# --------------------------------------------------------------------------------------------------
# Pure parts: clock, addresses, scheduling.


class SimClock:
    """Simulated seconds since the kubelet started, running `time_scale` times faster than real time."""

    def __init__(
        self,
        time_scale: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._mono0 = monotonic()
        self._wall0 = wall()

    def now(self) -> float:
        return (self._monotonic() - self._mono0) * self.time_scale

    def real_delay(self, until: float) -> float:
        """Real seconds from now until simulated time `until`."""
        return max(0.0, (until - self.now()) / self.time_scale)

    def wall(self, at: float) -> float:
        """Unix time of simulated time `at`; timestamps in status use it, so they stay consistent with it."""
        return self._wall0 + at / self.time_scale

    def timestamp(self, at: float) -> str:
        return datetime.fromtimestamp(self.wall(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def micro_timestamp(self, at: float) -> str:
        return datetime.fromtimestamp(self.wall(at), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PodIPPool:
    """Distinct loopback addresses for live pods, so a test can bind a socket and act as a given pod."""

    def __init__(self, network: ipaddress.IPv4Network = POD_NETWORK) -> None:
        self.network = network
        self._first = int(network.network_address)
        self._size = network.num_addresses
        self._cursor = 0
        self._owner_of: dict[int, str] = {}
        self._ip_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ip_of)

    def allocate(self, owner: str, preferred: str | None = None) -> str:
        """An address for `owner` (its previous one, or `preferred` if free); raises when the pool is empty."""
        if owner in self._ip_of:
            return str(ipaddress.IPv4Address(self._ip_of[owner]))
        wanted = self._usable(preferred) if preferred else None
        if wanted is not None and wanted not in self._owner_of:
            return self._take(owner, wanted)
        # Hand out addresses in a cycle, so a released address is not reused at once (like real IPAM).
        for step in range(self._size):
            offset = (self._cursor + step) % self._size
            candidate = self._first + offset
            # Skip the network's own first and last address, and .0 and .255 in the last octet:
            # they read as network and broadcast addresses.
            edge = offset in (0, self._size - 1)
            if edge or candidate & 0xFF in (0, 255) or candidate in self._owner_of:
                continue
            self._cursor = (offset + 1) % self._size
            return self._take(owner, candidate)
        raise RuntimeError(f"the pod network {self.network} has no free address left")

    def release(self, owner: str) -> None:
        address = self._ip_of.pop(owner, None)
        if address is not None:
            del self._owner_of[address]

    def ip_of(self, owner: str) -> str | None:
        address = self._ip_of.get(owner)
        return None if address is None else str(ipaddress.IPv4Address(address))

    def _take(self, owner: str, address: int) -> str:
        self._owner_of[address] = owner
        self._ip_of[owner] = address
        return str(ipaddress.IPv4Address(address))

    def _usable(self, ip: str) -> int | None:
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        edges = (self.network.network_address, self.network.broadcast_address)
        if address not in self.network or address in edges or address.packed[-1] in (0, 255):
            return None
        return int(address)


def host_ip(index: int) -> str:
    """The address of simulated node `index` (127.0.1.1 for node 0)."""
    return str(ipaddress.IPv4Address("127.0.1.1") + index)


@dataclass(frozen=True)
class NodeView:
    """What the scheduler needs to know of a node."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    ready: bool = True


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "In")
    values = [str(v) for v in expression.get("values") or []]
    value = labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def node_fits(pod: Mapping[str, Any], node: NodeView) -> bool:
    """Whether the pod's nodeSelector and required node affinity admit the node."""
    spec = pod.get("spec") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        # Terms are ORed, the expressions inside a term ANDed, as in the scheduler.
        return any(
            all(_expression_matches(e, node.labels) for e in term.get("matchExpressions") or [])
            for term in terms
        )
    return True


def choose_node(
    pod: Mapping[str, Any], nodes: Sequence[NodeView], load: Mapping[str, int]
) -> tuple[str | None, str]:
    """The least-loaded node the pod fits on (ties go to the earliest node), or None and why not."""
    schedulable = [n for n in nodes if n.ready and not n.unschedulable]
    fitting = [n for n in schedulable if node_fits(pod, n)]
    if fitting:
        best = min(fitting, key=lambda n: (load.get(n.name, 0), nodes.index(n)))
        return best.name, ""
    reasons = []
    if len(schedulable) < len(nodes):
        reasons.append(f"{len(nodes) - len(schedulable)} node(s) were unschedulable")
    if schedulable:
        reasons.append(f"{len(schedulable)} node(s) didn't match Pod's node affinity/selector")
    return None, f"0/{len(nodes)} nodes are available: {', '.join(reasons) or 'no nodes'}."


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()


def _unit_interval(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts`: seeded randomness that does not depend on event order."""
    return int(_digest(*parts)[:13], 16) / float(16**13)


# --------------------------------------------------------------------------------------------------
# Container and pod lives, as state machines over simulated time.


def _claim_names(pod: Mapping[str, Any]) -> list[str]:
    return [
        str(v["persistentVolumeClaim"]["claimName"])
        for v in (pod.get("spec") or {}).get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


@dataclass
class _Exit:
    at: float
    code: int
    reason: str


class ContainerRuntime:
    """One container of a pod: its runs, restarts, probes and readiness over simulated time."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        kind: ContainerKind,
        owner: str,
        pull_seconds: Callable[[ContainerRuntime], float],
        scripts: Mapping[str, Behaviour] | None = None,
    ) -> None:
        self.name = str(spec.get("name", ""))
        self.scripts = scripts or {}
        self.owner = owner
        self.kind: ContainerKind = kind
        self.image = str(spec.get("image", ""))
        self.image_error = image_reference_problem(self.image)
        self._pull_seconds = pull_seconds
        self.own_behaviour, self.config_error = self._resolve(spec)
        self.override: Behaviour | None = None
        probes = kind != "init"
        self.readiness = Probe.from_spec(spec.get("readinessProbe")) if probes else None
        self.liveness = Probe.from_spec(spec.get("livenessProbe")) if probes else None
        self.startup = Probe.from_spec(spec.get("startupProbe")) if probes else None

        self.state: ContainerState = "pending"
        self.waiting_reason = "ContainerCreating"
        self.waiting_message = ""
        self.start_at: float | None = None
        self.restart_count = 0
        self.consecutive_exits = 0
        self.has_run = False
        self.pulls = 0
        self.stopping = False
        self.stop_exit: _Exit | None = None

        self.run_start = 0.0
        self.container_id = ""
        self.image_id = ""
        self.outcomes: list[tuple[float, bool]] = []
        self.behaviour_exit: tuple[float, int] | None = None
        self.started_at: float | None = None
        self.exit: _Exit | None = None
        self.ready_flips: list[tuple[float, bool]] = []
        self.ready = False
        self.started = False
        self.seen_until = -math.inf
        self.terminated: dict[str, Any] | None = None
        self.last_terminated: dict[str, Any] | None = None

    def _resolve(self, spec: Mapping[str, Any]) -> tuple[Behaviour, str | None]:
        try:
            return container_behaviour(spec, self.scripts), None
        except BehaviourError as exc:
            return Behaviour(), f"KUBESIM_BEHAVIOUR of container {spec.get('name')!r}: {exc}"

    @property
    def behaviour(self) -> Behaviour:
        return self.override if self.override is not None else self.own_behaviour

    @property
    def initialised(self) -> bool:
        """An init container has completed; a sidecar has started."""
        if self.kind == "sidecar":
            return self.started
        return self.state == "terminated" and self.exit_code == 0

    @property
    def exit_code(self) -> int | None:
        return None if self.terminated is None else int(self.terminated["exitCode"])

    # -- transitions ---------------------------------------------------------------------------

    def begin_pull(self, at: float) -> None:
        """The kubelet starts creating this container at `at`: pull its image, then run it."""
        if self.stopping:
            return
        if self.image_error:
            # A name that does not parse is never pulled: the container waits until the spec changes.
            self.state, self.waiting_reason, self.waiting_message = (
                "stuck",
                "InvalidImageName",
                self.image_error,
            )
            return
        if self.config_error:
            self.state, self.waiting_reason, self.waiting_message = (
                "stuck",
                "CreateContainerConfigError",
                self.config_error,
            )
            return
        self.pulls += 1
        self.state, self.waiting_reason, self.waiting_message = "pulling", "ContainerCreating", ""
        self.start_at = at + self._pull_seconds(self)

    def advance_to(self, t: float, restart_policy: str) -> None:
        """Apply every transition due at or before `t`, in order."""
        while True:
            if self.state in ("pulling", "backoff") and self.start_at is not None and self.start_at <= t:
                if self.state == "pulling" and self.behaviour.pull_error:
                    self.state = "stuck"
                    self.waiting_reason = "ImagePullBackOff"
                    self.waiting_message = f'Back-off pulling image "{self.image}"'
                    continue
                self._start(self.start_at)
                continue
            if self.state == "running":
                if self.exit is not None and self.exit.at <= t:
                    self._exit(self.exit, restart_policy)
                    continue
                if not self.started and self.started_at is not None and self.started_at <= t:
                    self.started = True
                self.ready = value_at(self.ready_flips, False, t)
            break
        self.seen_until = max(self.seen_until, t)

    def next_event(self) -> float | None:
        if self.state in ("pulling", "backoff"):
            return self.start_at
        if self.state != "running":
            return None
        candidates = [self.exit.at if self.exit else None, next_flip(self.ready_flips, self.seen_until)]
        if not self.started and self.started_at is not None:
            candidates.append(self.started_at)
        times = [c for c in candidates if c is not None]
        return min(times) if times else None

    def _start(self, at: float) -> None:
        if self.has_run:
            self.restart_count += 1
        self.has_run = True
        self.state = "running"
        self.run_start = at
        self.start_at = None
        self.terminated = None
        self.container_id = "containerd://" + _digest(self.owner, self.name, self.restart_count, at)[:64]
        self.image_id = _image_id(self.image)
        self.started = False
        self.ready = False
        behaviour = self.behaviour
        self.outcomes = behaviour.process_outcomes(at)
        self.behaviour_exit = behaviour.process_exit(at, init=self.kind == "init")
        self._plan()

    def _plan(self) -> None:
        """Work out this run from its outcomes: when it is started, when ready, when it ends and why."""
        start = self.run_start
        exits: list[_Exit] = []
        if self.behaviour_exit is not None:
            at, code = self.behaviour_exit
            exits.append(_Exit(at, code, "Completed" if code == 0 else "Error"))
        self.started_at = start
        if self.startup is not None:
            passed, at = startup_outcome(start, self.startup, self.outcomes)
            self.started_at = at if passed else None
            if not passed:
                exits.append(_Exit(at, 137, "Error"))
        if self.liveness is not None and self.started_at is not None:
            seen = outcomes_from(self.outcomes, self.started_at, before=True)
            for at, alive in probe_flips(start, self.liveness, seen, initial=True):
                if not alive:
                    exits.append(_Exit(at, 137, "Error"))
                    break
        if self.stop_exit is not None:
            exits.append(self.stop_exit)
        self.exit = min(exits, key=lambda e: e.at) if exits else None
        flips: list[tuple[float, bool]] = []
        if self.kind != "init" and self.started_at is not None:
            seen = outcomes_from(self.outcomes, self.started_at, before=False)
            if self.readiness is not None:
                flips = probe_flips(start, self.readiness, seen, initial=False)
            else:
                flips = direct_flips(seen, initial=False)
        ends = self.exit.at if self.exit else math.inf
        self.ready_flips = [f for f in flips if f[0] < ends]

    def _exit(self, exit: _Exit, restart_policy: str) -> None:
        record = {
            "exitCode": exit.code,
            "reason": exit.reason,
            "startedAt": self.run_start,
            "finishedAt": exit.at,
            "containerID": self.container_id,
        }
        self.ready = False
        self.ready_flips = []
        self.started = False
        self.exit = None
        if self.stopping:
            self.state, self.terminated = "terminated", record
            return
        if self.kind == "init":
            restart = exit.code != 0 and restart_policy != "Never"
        elif self.kind == "sidecar":
            restart = True
        else:
            restart = restart_policy == "Always" or (restart_policy == "OnFailure" and exit.code != 0)
        if not restart:
            self.state, self.terminated = "terminated", record
            return
        if exit.at - self.run_start >= BACKOFF_RESET_AFTER:
            self.consecutive_exits = 0
        self.consecutive_exits += 1
        delay = restart_delay(self.consecutive_exits)
        self.last_terminated = record
        self.state = "backoff"
        self.start_at = exit.at + delay
        self.waiting_reason = "CrashLoopBackOff"
        self.waiting_message = f"back-off {delay:g}s restarting failed container={self.name}"

    def change_image(self, spec: Mapping[str, Any], at: float) -> None:
        """The pod's spec names a new image for this container: kill the running one and start the new image."""
        self.image = str(spec.get("image", ""))
        self.image_error = image_reference_problem(self.image)
        self.own_behaviour, self.config_error = self._resolve(spec)
        if self.stopping or self.state in ("pending", "terminated"):
            # Not started yet (the new image is used when it is), or done for good under its restart policy.
            return
        if self.state == "running":
            self.last_terminated = {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": self.run_start,
                "finishedAt": at,
                "containerID": self.container_id,
            }
            self.ready = False
            self.ready_flips = []
            self.started = False
            self.exit = None
        # A changed container is a new container to the kubelet: no back-off carried over.
        self.consecutive_exits = 0
        self.begin_pull(at)

    def set_override(self, behaviour: Behaviour | None, at: float) -> None:
        """Change how the process behaves from `at` on (None: back to what its env and image say)."""
        self.override = behaviour
        if self.state == "running":
            kept = [o for o in self.outcomes if o[0] < at]
            self.outcomes = kept + self.behaviour.process_outcomes(at)
            self.behaviour_exit = self.behaviour.process_exit(at, init=self.kind == "init")
            self._plan()
        elif (
            self.state == "stuck"
            and self.waiting_reason == "ImagePullBackOff"
            and not self.behaviour.pull_error
        ):
            self.begin_pull(at)

    def stop(self, at: float, deadline: float) -> None:
        """The pod is being deleted: SIGTERM now, SIGKILL at `deadline`; no more restarts."""
        self.stopping = True
        if self.state == "running":
            shutdown = at + self.behaviour.shutdown_seconds
            self.stop_exit = (
                _Exit(shutdown, 0, "Completed") if shutdown <= deadline else _Exit(deadline, 137, "Error")
            )
            self._plan()
        elif self.state in ("pulling", "backoff", "pending", "stuck"):
            self.state = "stopped"
            if self.last_terminated is not None:
                self.terminated = self.last_terminated

    # -- status --------------------------------------------------------------------------------

    def status(self, clock: SimClock) -> dict[str, Any]:
        state: dict[str, Any]
        if self.state == "running":
            state = {"running": {"startedAt": clock.timestamp(self.run_start)}}
        elif self.state in ("terminated", "stopped") and self.terminated is not None:
            state = {"terminated": _render_termination(self.terminated, clock)}
        else:
            waiting = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.state == "running" and self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        if self.last_terminated is not None and self.terminated is not self.last_terminated:
            status["lastState"] = {"terminated": _render_termination(self.last_terminated, clock)}
        return status


def _render_termination(record: Mapping[str, Any], clock: SimClock) -> dict[str, Any]:
    return {
        "exitCode": record["exitCode"],
        "reason": record["reason"],
        "startedAt": clock.timestamp(record["startedAt"]),
        "finishedAt": clock.timestamp(record["finishedAt"]),
        "containerID": record["containerID"],
    }


def _image_id(image: str) -> str:
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)
    if ":" in last[-1]:
        repository = repository[: repository.rfind(":")]
    return f"{repository}@sha256:{_digest('image', image)}"


_OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


class PodRuntime:
    """One pod admitted to a simulated node: its sandbox, containers and conditions."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        node: str,
        node_ip: str,
        at: float,
        seed: int,
        scripts: Mapping[str, Behaviour] | None = None,
    ) -> None:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.uid = str(meta.get("uid", ""))
        self.namespace = str(meta.get("namespace", "default"))
        self.name = str(meta.get("name", ""))
        self.node = node
        self.host_ip = node_ip
        self.pod: Mapping[str, Any] = pod
        self.seed = seed
        self.restart_policy = str(spec.get("restartPolicy") or "Always")
        self.admitted_at = at
        self.sandbox_at: float | None = None
        self.pod_ip: str | None = None
        self.claims = _claim_names(pod)
        self.identities: dict[str, str] = {}
        owner = f"{self.namespace}/{self.name}/{self.uid}"
        self.inits = [
            ContainerRuntime(
                c,
                "sidecar" if c.get("restartPolicy") == "Always" else "init",
                owner,
                self._pull_seconds,
                scripts,
            )
            for c in spec.get("initContainers") or []
        ]
        self.apps = [
            ContainerRuntime(c, "app", owner, self._pull_seconds, scripts)
            for c in spec.get("containers") or []
        ]
        if self.inits:
            for app in self.apps:
                app.waiting_reason = "PodInitializing"
        self.init_index = 0
        self.apps_begun = False
        self.initialized_at: float | None = at if not self.inits else None
        self.terminating = False
        self.delete_requested = False
        self.conditions: dict[str, tuple[bool, float]] = {}
        self.wake_at: float | None = None
        self.last_sent: dict[str, Any] | None = None
        self._update_conditions(at)

    @property
    def containers(self) -> list[ContainerRuntime]:
        return [*self.inits, *self.apps]

    def _pull_seconds(self, container: ContainerRuntime) -> float:
        low, high = PULL_SECONDS
        share = _unit_interval(
            self.seed, self.namespace, self.name, container.name, container.image, container.pulls
        )
        return low + (high - low) * share

    # -- lifecycle -----------------------------------------------------------------------------

    def start_sandbox(self, at: float, pod_ip: str, identities: dict[str, str]) -> None:
        """Volumes are in place and the pod has its IP: containers may be created from `at` on."""
        self.sandbox_at = at
        self.pod_ip = pod_ip
        self.identities = identities
        self._progress(at)

    def begin_termination(self, at: float, grace: float) -> None:
        if self.terminating:
            return
        self.terminating = True
        for container in self.containers:
            container.stop(at, at + grace)
        self._update_conditions(at)

    @property
    def finished(self) -> bool:
        """Every container has stopped after a deletion: the kubelet may let the API server remove the pod."""
        return self.terminating and all(c.state in ("terminated", "stopped") for c in self.containers)

    def advance(self, now: float) -> None:
        """Play every transition due up to `now`, one instant at a time so conditions get exact times."""
        while (at := self.next_event()) is not None and at <= now:
            self._step(at)
        self._step(now)

    def next_event(self) -> float | None:
        times = [t for c in self.containers if (t := c.next_event()) is not None]
        return min(times) if times else None

    def _step(self, at: float) -> None:
        for container in self.containers:
            container.advance_to(at, self.restart_policy)
        self._progress(at)
        self._update_conditions(at)

    def _progress(self, at: float) -> None:
        """Walk init containers in order, then create the app containers."""
        if self.sandbox_at is None or self.terminating or self.apps_begun:
            return
        while self.init_index < len(self.inits):
            init = self.inits[self.init_index]
            if init.state == "pending":
                init.begin_pull(at)
                init.advance_to(at, self.restart_policy)
            if not init.initialised:
                return
            self.init_index += 1
        if self.initialized_at is None:
            self.initialized_at = at
        self.apps_begun = True
        for container in self.apps:
            container.begin_pull(at)

    def readiness_gates(self) -> list[tuple[str, str | None]]:
        """Each readiness gate's condition type and its status in the pod, if set."""
        observed = {
            c.get("type"): c.get("status") for c in (self.pod.get("status") or {}).get("conditions") or []
        }
        return [
            (str(g.get("conditionType")), observed.get(g.get("conditionType")))
            for g in (self.pod.get("spec") or {}).get("readinessGates") or []
        ]

    def _update_conditions(self, at: float) -> None:
        runnable = [*[c for c in self.inits if c.kind == "sidecar"], *self.apps]
        containers_ready = self.initialized_at is not None and all(c.ready for c in runnable)
        gates_ready = all(status == "True" for _, status in self.readiness_gates())
        values = {
            "PodScheduled": True,
            "PodReadyToStartContainers": self.sandbox_at is not None and not self.finished,
            "Initialized": self.initialized_at is not None,
            "ContainersReady": containers_ready,
            "Ready": containers_ready and gates_ready,
        }
        for kind, value in values.items():
            previous = self.conditions.get(kind)
            if previous is None or previous[0] != value:
                self.conditions[kind] = (value, at)

    def phase(self) -> str:
        if any(c.kind == "init" and c.state == "terminated" and c.exit_code != 0 for c in self.inits):
            return "Failed"
        done = ("terminated", "stopped")
        if self.apps and all(c.state in done for c in self.apps) and (self.terminating or self.apps_begun):
            if all(c.state == "terminated" and c.exit_code == 0 for c in self.apps):
                return "Succeeded"
            return "Failed"
        if self.initialized_at is not None and any(c.has_run for c in self.apps):
            return "Running"
        return "Pending"

    # -- status --------------------------------------------------------------------------------

    def status(self, clock: SimClock) -> dict[str, Any]:
        """The pod status this kubelet reports, with conditions other parties own kept as observed."""
        conditions = []
        for kind in _OWN_CONDITIONS:
            value, since = self.conditions[kind]
            condition: dict[str, Any] = {
                "type": kind,
                "status": "True" if value else "False",
                "lastProbeTime": None,
                "lastTransitionTime": clock.timestamp(since),
            }
            if not value:
                condition.update(self._why_not(kind))
            conditions.append(condition)
        observed = (self.pod.get("status") or {}).get("conditions") or []
        conditions.extend(c for c in observed if c.get("type") not in _OWN_CONDITIONS)
        status: dict[str, Any] = {
            "phase": self.phase(),
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": clock.timestamp(self.admitted_at),
            # The kubelet reports app containers sorted by name and init containers in spec order.
            "containerStatuses": [c.status(clock) for c in sorted(self.apps, key=lambda c: c.name)],
        }
        if self.pod_ip is not None:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.inits:
            status["initContainerStatuses"] = [c.status(clock) for c in self.inits]
        return status

    def _why_not(self, kind: str) -> dict[str, str]:
        if kind == "Initialized":
            pending = [c.name for c in self.inits if not c.initialised]
            return {
                "reason": "ContainersNotInitialized",
                "message": f"containers with incomplete status: [{' '.join(pending)}]",
            }
        if kind in ("Ready", "ContainersReady"):
            unready = [c.name for c in [*self.inits, *self.apps] if c.kind != "init" and not c.ready]
            if kind == "Ready" and not unready and self.initialized_at is not None:
                for gate, status in self.readiness_gates():
                    if status is None:
                        message = f'corresponding condition of pod readiness gate "{gate}" does not exist.'
                        return {"reason": "ReadinessGatesNotReady", "message": message}
                    if status != "True":
                        message = f'the status of pod readiness gate "{gate}" is not "True", but {status}'
                        return {"reason": "ReadinessGatesNotReady", "message": message}
            if self.finished:
                return {"reason": "PodCompleted"}
            return {
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{' '.join(unready)}]",
            }
        return {}

    def set_behaviour(self, behaviour: Behaviour | None, container: str | None, at: float) -> None:
        targets = [c for c in self.containers if container is None or c.name == container]
        if container is None:
            targets = [c for c in targets if c.kind != "init"]
        if not targets:
            raise LookupError(f"pod {self.namespace}/{self.name} has no container named {container!r}")
        self.advance(at)
        for target in targets:
            target.set_override(behaviour, at)
        self._step(at)

    def update_spec(self, pod: Mapping[str, Any], at: float) -> None:
        """Take in a newer version of the pod: in-place image changes restart only the changed container."""
        self.advance(at)
        self.pod = pod
        spec = pod.get("spec") or {}
        for kind_key, containers in (("initContainers", self.inits), ("containers", self.apps)):
            by_name = {str(c.get("name")): c for c in spec.get(kind_key) or []}
            for container in containers:
                new = by_name.get(container.name)
                if new is not None and str(new.get("image", "")) != container.image:
                    container.change_image(new, at)
        self._step(at)


def _grace_seconds(pod: Mapping[str, Any]) -> float:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if value is not None:
            return max(0.0, float(value))
    return 30.0


def _emptydir_identity(uid: str, volume: str) -> str:
    return "emptydir-" + _digest("emptyDir", uid, volume)[:20]


# --------------------------------------------------------------------------------------------------
# The kubelet: HTTP I/O and wiring.


class _Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


class KubeletApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(f"{method} {path}: {status} {body.get('message', body)}")
        self.status = status
        self.body = body


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
        self.base_url = self.connection.url.rstrip("/")
        self.schedule_pods = schedule_pods
        self.bind_claims = bind_claims
        # script_image: behaviours by image reference, read when a container starts or changes image.
        self.image_behaviours: dict[str, Behaviour] = {}
        self.node_names = [f"{NODE_PREFIX}{i}" for i in range(nodes)]
        self.time_scale = float(time_scale)
        self.seed = seed
        self.clock = SimClock(self.time_scale)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

        self._nodes: dict[str, NodeView] = {n: NodeView(n, self._node_labels(n)) for n in self.node_names}
        self._pool = PodIPPool()
        self._pods: dict[str, PodRuntime] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._unscheduled: dict[str, _Unscheduled] = {}
        self._binding: dict[str, str] = {}
        # Pods per node, running or being bound: kept up to date so scheduling 10,000 pods stays linear.
        self._node_load: dict[str, int] = dict.fromkeys(self.node_names, 0)
        self._binding_supported = True
        self._claims: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._provisioning: set[str] = set()
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
        self._leases_supported = True

    # -- public API ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the nodes, then list and watch the cluster; returns once the first lists are in."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        # Events and semaphores belong to the loop that uses them: make them on the loop that starts us.
        self._timer_wake = asyncio.Event()
        self._dirty_wake = asyncio.Event()
        self._write_slots = asyncio.Semaphore(WRITE_CONCURRENCY)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10),
            headers=self.connection.headers,
            connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context or True),
        )
        try:
            if not self.bind_claims:
                await self._register_storage_class()
            for index, name in enumerate(self.node_names):
                await self._register_node(index, name)
            synced = [asyncio.Event() for _ in range(3)]
            self._spawn(self._watch("/api/v1/nodes", self._on_node, self._on_node_list, synced[0]))
            self._spawn(
                self._watch("/api/v1/persistentvolumeclaims", self._on_claim, self._on_claim_list, synced[1])
            )
            self._spawn(self._watch("/api/v1/pods", self._on_pod, self._on_pod_list, synced[2]))
            self._spawn(self._run_timers())
            self._spawn(self._write_statuses())
            self._spawn(self._heartbeat())
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in synced)), timeout=30)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def set_behaviour(
        self, namespace: str, name: str, behaviour: Behaviour | str | None, container: str | None = None
    ) -> None:
        """Make a live pod's containers (or one of them) behave differently from now on.

        `behaviour` is a Behaviour, a string in the KUBESIM_BEHAVIOUR grammar, or None to go back to what
        each container's env and image say. Timed clauses count from now. Safe to call from any thread.
        """
        parsed = parse_behaviour(behaviour) if isinstance(behaviour, str) else behaviour
        self._call_in_loop(self._set_behaviour, namespace, name, parsed, container)

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

    # -- HTTP ----------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        assert self._session is not None, "the kubelet is not started"
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self._session.request(
            method, self.base_url + path, data=data, headers=headers, params=params
        ) as response:
            raw = await response.read()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw.decode(errors="replace")}
        return response.status, decoded if isinstance(decoded, dict) else {"items": decoded}

    async def _expect(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        exists_ok: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """A request that raises KubeletApiError unless it succeeds (or finds the object existing)."""
        status, decoded = await self._request(method, path, body, content_type)
        if status >= 300 and not (exists_ok and decoded.get("reason") == "AlreadyExists"):
            raise KubeletApiError(method, path, status, decoded)
        return status, decoded

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._stopping:
            log.error("kubelet task failed", exc_info=task.exception())

    async def _watch(
        self,
        path: str,
        on_event: Callable[[str, dict[str, Any]], None],
        on_list: Callable[[list[dict[str, Any]]], None],
        synced: asyncio.Event,
    ) -> None:
        """List, then watch from the list's resourceVersion; list again when the watch expires or breaks."""
        assert self._session is not None
        retry = 0.1
        while not self._stopping:
            try:
                _, listing = await self._expect("GET", path)
                on_list(listing.get("items") or [])
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                synced.set()
                retry = 0.1
                while not self._stopping:
                    version = await self._watch_once(path, version, on_event)
            except _Expired:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("watch of %s failed (%s); listing again in %.1fs", path, exc, retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 5.0)

    async def _watch_once(
        self, path: str, version: str, on_event: Callable[[str, dict[str, Any]], None]
    ) -> str:
        assert self._session is not None
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        if version:
            params["resourceVersion"] = version
        async with self._session.get(
            self.base_url + path, params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        ) as response:
            if response.status == 410:
                raise _Expired()
            if response.status >= 300:
                raise KubeletApiError("WATCH", path, response.status, {"message": await response.text()})
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise _Expired()
                        raise KubeletApiError("WATCH", path, int(obj.get("code") or 500), obj)
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        on_event(str(kind), obj)
        return version

    # -- nodes ---------------------------------------------------------------------------------

    def _node_labels(self, name: str) -> dict[str, str]:
        index = self.node_names.index(name)
        return {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": f"kubesim-zone-{index % 3}",
            "node.kubernetes.io/instance-type": "kubesim.standard",
        }

    def _node_status(self, index: int, name: str) -> dict[str, Any]:
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
                "bootID": str(uuid.UUID(_digest("boot", self.seed, name)[:32])),
                "containerRuntimeVersion": "kubesim://1.0.0",
                "kernelVersion": platform.release(),
                "kubeProxyVersion": "",
                "kubeletVersion": KUBELET_VERSION,
                "machineID": _digest("machine", name)[:32],
                "operatingSystem": "linux",
                "osImage": "kubesim",
                "systemUUID": str(uuid.UUID(_digest("system", name)[:32])),
            },
        }

    async def _register_storage_class(self) -> None:
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        await self._persist("POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class, exists_ok=True)

    async def _register_node(self, index: int, name: str) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": self._node_labels(name)},
            "spec": {"providerID": f"kubesim://{name}"},
        }
        await self._persist("POST", "/api/v1/nodes", node, exists_ok=True)
        await self._persist(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": self._node_status(index, name)},
            "application/merge-patch+json",
        )
        await self._renew_lease(name)

    async def _persist(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str = "application/json",
        exists_ok: bool = False,
    ) -> None:
        """A write that must succeed for the kubelet to start: transient failures are retried a few times."""
        for attempt in range(20):
            status, answer = await self._request(method, path, body, content_type)
            if status < 300 or (exists_ok and answer.get("reason") == "AlreadyExists"):
                return
            if status not in (409, 429, 500, 503, 504) or attempt == 19:
                raise KubeletApiError(method, path, status, answer)
            await asyncio.sleep(RETRY_SECONDS)

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
            status, _ = await self._request(
                "PATCH", f"{path}/{name}", {"spec": spec}, "application/merge-patch+json"
            )
            if status == 404:
                lease = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": spec,
                }
                status, body = await self._request("POST", path, lease)
                if status == 404 and "namespace" in str(body.get("message", "")).lower():
                    namespace = {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": "kube-node-lease"},
                    }
                    await self._request("POST", "/api/v1/namespaces", namespace)
                    status, body = await self._request("POST", path, lease)
                if status >= 300 and status != 409:
                    # Leases are a nicety: a server without them still gets node status heartbeats.
                    log.info("node leases unavailable (%s); relying on node status heartbeats", status)
                    self._leases_supported = False
        except aiohttp.ClientError as exc:
            log.debug("lease renewal for %s failed: %s", name, exc)

    async def _heartbeat(self) -> None:
        """Renew node leases and re-post node status, at simulated intervals but never busier than 1/s real."""
        last_status = self.clock.now()
        while not self._stopping:
            await asyncio.sleep(max(1.0, LEASE_RENEW / self.time_scale))
            for name in self.node_names:
                await self._renew_lease(name)
            if self.clock.now() - last_status >= NODE_STATUS_EVERY or not self._leases_supported:
                last_status = self.clock.now()
                for index, name in enumerate(self.node_names):
                    with contextlib.suppress(aiohttp.ClientError, KubeletApiError):
                        await self._expect(
                            "PATCH",
                            f"/api/v1/nodes/{name}/status",
                            {"status": self._node_status(index, name)},
                            "application/merge-patch+json",
                        )

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

    def _on_claim_list(self, claims: list[dict[str, Any]]) -> None:
        seen = set()
        for claim in claims:
            meta = claim.get("metadata") or {}
            seen.add((str(meta.get("namespace")), str(meta.get("name"))))
            self._on_claim("ADDED", claim)
        for key in [k for k in self._claims if k not in seen]:
            self._on_claim("DELETED", dict(self._claims[key]))

    def _on_claim(self, kind: str, claim: dict[str, Any]) -> None:
        meta = claim.get("metadata") or {}
        key = (str(meta.get("namespace", "default")), str(meta.get("name", "")))
        if kind == "DELETED":
            known = self._claims.get(key)
            if known is not None and (known.get("metadata") or {}).get("uid") == meta.get("uid"):
                del self._claims[key]
            volume = str((claim.get("spec") or {}).get("volumeName") or "")
            if volume == f"pvc-{meta.get('uid')}":
                # The provisioner's volumes have reclaim policy Delete: they go with their claim.
                self._spawn(self._request("DELETE", f"/api/v1/persistentvolumes/{volume}"))
        else:
            self._claims[key] = claim
            if self._claim_needs_volume(claim):
                uid = str(meta.get("uid", ""))
                if uid not in self._provisioning:
                    self._provisioning.add(uid)
                    self._spawn(self._provision(claim))
        for uid in list(self._claim_waiters.get(key, ())):
            self._claim_changed(uid)

    def _claim_needs_volume(self, claim: Mapping[str, Any]) -> bool:
        meta, spec, status = claim.get("metadata") or {}, claim.get("spec") or {}, claim.get("status") or {}
        if meta.get("deletionTimestamp"):
            return False
        if not self.bind_claims:
            # As an external provisioner: only claims the PV controller handed to us, not yet bound.
            annotations = meta.get("annotations") or {}
            ours = PROVISIONER in (
                annotations.get("volume.kubernetes.io/storage-provisioner"),
                annotations.get("volume.beta.kubernetes.io/storage-provisioner"),
            )
            return ours and not spec.get("volumeName")
        return not spec.get("volumeName") or status.get("phase") != "Bound"

    async def _provision(self, claim: Mapping[str, Any]) -> None:
        """Act as the dynamic provisioner: a new PersistentVolume per claim, then bind the claim to it."""
        meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
        namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
        volume = str(spec.get("volumeName") or f"pvc-{uid}")
        size = str(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi")
        modes = list(spec.get("accessModes") or ["ReadWriteOnce"])
        try:
            if not spec.get("volumeName"):
                persistent_volume = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {
                        "name": volume,
                        "annotations": {
                            "pv.kubernetes.io/provisioned-by": "kubesim" if self.bind_claims else PROVISIONER
                        },
                    },
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": modes,
                        "persistentVolumeReclaimPolicy": "Delete",
                        "storageClassName": str(spec.get("storageClassName") or "standard"),
                        "volumeMode": str(spec.get("volumeMode") or "Filesystem"),
                        "claimRef": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "namespace": namespace,
                            "name": name,
                            "uid": uid,
                        },
                        "hostPath": {"path": f"/var/lib/kubesim/volumes/{volume}"},
                    },
                }
                await self._expect("POST", "/api/v1/persistentvolumes", persistent_volume, exists_ok=True)
                if not self.bind_claims:
                    return  # the PV controller binds the claim to its pre-bound volume
                await self._request(
                    "PATCH",
                    f"/api/v1/persistentvolumes/{volume}/status",
                    {"status": {"phase": "Bound"}},
                    "application/merge-patch+json",
                )
                base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
                binding = {
                    "metadata": {
                        "uid": uid,
                        "annotations": {
                            "pv.kubernetes.io/bind-completed": "yes",
                            "pv.kubernetes.io/bound-by-controller": "yes",
                        },
                    },
                    "spec": {"volumeName": volume},
                }
                await self._expect("PATCH", base, binding, "application/merge-patch+json")
            base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
            bound = {"status": {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}}
            await self._expect("PATCH", base + "/status", bound, "application/merge-patch+json")
        except KubeletApiError as exc:
            if exc.status == 404 and not spec.get("volumeName") and self.bind_claims:
                # The claim went before it was bound, so its deletion named no volume: the volume
                # provisioned for it goes now, as the reclaim policy Delete asks.
                log.info("claim %s/%s is gone before binding; deleting %s", namespace, name, volume)
                self._spawn(self._request("DELETE", f"/api/v1/persistentvolumes/{volume}"))
                return
            log.info("could not bind claim %s/%s (%s); retrying", namespace, name, exc)
            self._later(RETRY_SECONDS, lambda: self._retry_provision(namespace, name, uid))
        except aiohttp.ClientError as exc:
            log.info("could not bind claim %s/%s (%s); retrying", namespace, name, exc)
            self._later(RETRY_SECONDS, lambda: self._retry_provision(namespace, name, uid))
        finally:
            self._provisioning.discard(uid)

    def _retry_provision(self, namespace: str, name: str, uid: str) -> None:
        claim = self._claims.get((namespace, name))
        if claim is not None and (claim.get("metadata") or {}).get("uid") == uid:
            self._on_claim("MODIFIED", dict(claim))

    def _claims_problem(self, namespace: str, claims: Sequence[str]) -> str | None:
        """Why the pod's claims cannot be used yet, or None when all are bound."""
        for claim_name in claims:
            claim = self._claims.get((namespace, claim_name))
            if claim is None:
                return f'persistentvolumeclaim "{claim_name}" not found'
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return f'persistentvolumeclaim "{claim_name}" is being deleted'
            if (claim.get("status") or {}).get("phase") != "Bound" or not (claim.get("spec") or {}).get(
                "volumeName"
            ):
                return "pod has unbound immediate PersistentVolumeClaims"
        return None

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
                self._spawn(self._delete_pod(uid, str(meta.get("namespace")), str(meta.get("name"))))
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
            self._unwatch_claims(uid, str(meta.get("namespace")), _claim_names(pod))
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
        claims = _claim_names(entry.pod)
        problem = self._claims_problem(namespace, claims)
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
        self._spawn(self._bind(uid, namespace, str(meta.get("name")), node))

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
                status, body = await self._request("POST", path + "/binding", binding)
                if status in (404, 405) and (body.get("details") or {}).get("name") != name:
                    self._binding_supported = False
            if not self._binding_supported:
                patch = {"metadata": {"uid": uid}, "spec": {"nodeName": node}}
                status, body = await self._request("PATCH", path, patch, "application/merge-patch+json")
            if status >= 300:
                raise KubeletApiError("BIND", path, status, body)
        except (KubeletApiError, aiohttp.ClientError) as exc:
            if self._end_binding(uid) and uid in self._unscheduled:
                log.debug("binding %s/%s to %s failed: %s", namespace, name, node, exc)
                # The pod may be gone (its deletion is on the way) or changed; try again shortly.
                self._later(RETRY_SECONDS, lambda: self._try_schedule(uid))

    def _later(self, seconds: float, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self._stopping:
            self._loop.call_later(seconds, callback)

    # -- pods: running -------------------------------------------------------------------------

    def _admit(self, pod: Mapping[str, Any], node: str) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        now = self.clock.now()
        runtime = PodRuntime(
            pod, node, host_ip(self.node_names.index(node)), now, self.seed, self.image_behaviours
        )
        self._pods[uid] = runtime
        self._node_load[node] += 1
        self._by_name[(runtime.namespace, runtime.name)] = uid
        if meta.get("deletionTimestamp"):
            runtime.begin_termination(now, 0.0)
        else:
            self._try_sandbox(runtime)
        self._touch(runtime)

    def _try_sandbox(self, runtime: PodRuntime) -> None:
        problem = self._claims_problem(runtime.namespace, runtime.claims)
        if problem is not None:
            # Like a kubelet waiting for volumes to attach: the containers stay ContainerCreating.
            self._watch_claims(runtime.uid, runtime.namespace, runtime.claims)
            return
        self._unwatch_claims(runtime.uid, runtime.namespace, runtime.claims)
        identities: dict[str, str] = {}
        for volume in (runtime.pod.get("spec") or {}).get("volumes") or []:
            name = str(volume.get("name"))
            if "emptyDir" in volume:
                identities[name] = _emptydir_identity(runtime.uid, name)
            elif claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
                bound = self._claims[(runtime.namespace, str(claim))]
                identities[name] = str((bound.get("spec") or {}).get("volumeName"))
        previous = (runtime.pod.get("status") or {}).get("podIP")
        pod_ip = self._pool.allocate(runtime.uid, preferred=str(previous) if previous else None)
        runtime.start_sandbox(self.clock.now(), pod_ip, identities)
        self._touch(runtime)

    def _on_running_pod(self, runtime: PodRuntime, pod: dict[str, Any]) -> None:
        now = self.clock.now()
        runtime.update_spec(pod, now)
        if (pod.get("metadata") or {}).get("deletionTimestamp") and not runtime.terminating:
            runtime.begin_termination(now, _grace_seconds(pod))
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
            self._spawn(self._finalise(runtime))

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
            self._unwatch_claims(uid, str(meta.get("namespace")), _claim_names(entry.pod))
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
            status, body = await self._request(
                "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", options
            )
        except aiohttp.ClientError as exc:
            status, body = 0, {"message": str(exc)}
        if status == 404 or (status == 409 and "precondition" in str(body.get("message", "")).lower()):
            # Already gone, or replaced by a new pod of the same name.
            self._forget(uid)
        elif status >= 300 or status == 0:
            log.info(
                "deleting pod %s/%s failed (%s %s); retrying", namespace, name, status, body.get("message")
            )
            self._later(RETRY_SECONDS, lambda: self._retry_delete(uid, namespace, name))

    def _retry_delete(self, uid: str, namespace: str, name: str) -> None:
        if uid in self._pods:
            self._spawn(self._delete_pod(uid, namespace, name))

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
                code, body = await self._request("PATCH", path, patch, "application/merge-patch+json")
            except aiohttp.ClientError as exc:
                code, body = 0, {"message": str(exc)}
        if code < 300:
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
            self._later(RETRY_SECONDS, lambda: self._retry_status(uid))

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
