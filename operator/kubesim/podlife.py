"""Container and pod lives in kubesim's kubelet simulator, as state machines over simulated time.

`PodRuntime` plays a pod (sandbox, init containers, sidecars, app containers, termination) and
`ContainerRuntime` one container (pulls, runs, restarts with back-off, probes, readiness), both driven
by behaviour scripts (behaviour.py) on a `SimClock`; nothing here talks to a server.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kubesim.behaviour import (
    BACKOFF_RESET_AFTER,
    Behaviour,
    BehaviourError,
    Probe,
    container_behaviour,
    direct_flips,
    next_flip,
    outcomes_from,
    probe_flips,
    restart_delay,
    startup_outcome,
    value_at,
)
from kubesim.images import fully_qualified, image_reference_problem

# Image pulls take between these many simulated seconds.
PULL_SECONDS = (1.0, 2.0)
# The kubelet's image back-off (flowcontrol.Backoff of backOffPeriod 10 s and MaxContainerBackOff 5 min):
# after each failed pull of an image by a pod, the next waits twice as long.
IMAGE_BACKOFF_INITIAL = 10.0
IMAGE_BACKOFF_MAX = 300.0
# A failed pull shows as ErrImagePull until the pod's next sync finds the image in back-off.
PULL_ERROR_SHOWN = 1.0

ContainerKind = Literal["init", "sidecar", "app"]
ContainerState = Literal[
    "pending", "pulling", "pull-backoff", "running", "backoff", "stuck", "terminated", "stopped"
]


def image_backoff(failures: int) -> float:
    """Seconds the kubelet waits before pulling an image again after `failures` failed pulls in a row."""
    return min(IMAGE_BACKOFF_INITIAL * 2.0 ** min(max(failures - 1, 0), 32), IMAGE_BACKOFF_MAX)


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


def digest(*parts: object) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()


def unit_interval(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts`: seeded randomness that does not depend on event order."""
    return int(digest(*parts)[:13], 16) / float(16**13)


def claim_names(pod: Mapping[str, Any]) -> list[str]:
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
        node_images: set[str] | None = None,
    ) -> None:
        self.name = str(spec.get("name", ""))
        # The images on the node (pulled there before): what imagePullPolicy Never may run.
        self.node_images = node_images if node_images is not None else set()
        self.pull_policy = str(spec.get("imagePullPolicy") or "")
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
        self.pull_failures = 0
        # A Secret or ConfigMap key the container's env names that the API server does not have (the
        # kubelet reads them when it creates the container, after the pull): CreateContainerConfigError.
        self.reference_error: str | None = None
        self.pull_error_until: float | None = None
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
        if self.pull_policy == "Never" and self.image not in self.node_images:
            # The kubelet's ErrImageNeverPull: it never pulls, and waits for the image to be put there.
            self.state, self.waiting_reason, self.waiting_message = (
                "stuck",
                "ErrImageNeverPull",
                f'Container image "{self.image}" is not present with pull policy of Never',
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
        self.start_at = at + (0.0 if self.pull_policy == "Never" else self._pull_seconds(self))

    def _pull_failed(self, at: float) -> None:
        """The registry refused the image: ErrImagePull now, ImagePullBackOff from the next sync, and
        another pull once the back-off has passed (the status keeps saying ImagePullBackOff meanwhile)."""
        self.pull_failures += 1
        self.state = "pull-backoff"
        self.waiting_reason = "ErrImagePull"
        reference = fully_qualified(self.image)
        self.waiting_message = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{reference}": '
            f'failed to resolve reference "{reference}": {reference}: not found'
        )
        self.pull_error_until = at + PULL_ERROR_SHOWN
        self.start_at = at + image_backoff(self.pull_failures)

    def advance_to(self, t: float, restart_policy: str) -> None:
        """Apply every transition due at or before `t`, in order."""
        while True:
            if self.state == "pull-backoff":
                if self.pull_error_until is not None and self.pull_error_until <= t:
                    self.pull_error_until = None
                    self.waiting_reason = "ImagePullBackOff"
                    self.waiting_message = f'Back-off pulling image "{self.image}"'
                    continue
                if self.start_at is not None and self.start_at <= t:
                    retry_at = self.start_at
                    self.pulls += 1
                    self.state, self.pull_error_until = "pulling", None
                    self.start_at = retry_at + self._pull_seconds(self)
                    continue
            if self.state in ("pulling", "backoff") and self.start_at is not None and self.start_at <= t:
                if self.state == "pulling" and self.behaviour.pull_error:
                    self._pull_failed(self.start_at)
                    continue
                if self.state == "pulling":
                    self.node_images.add(self.image)
                    if self.reference_error is not None:
                        self.state, self.waiting_reason = "stuck", "CreateContainerConfigError"
                        self.waiting_message, self.start_at = self.reference_error, None
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
        if self.state == "pull-backoff":
            return min(t for t in (self.pull_error_until, self.start_at) if t is not None)
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
        self.container_id = "containerd://" + digest(self.owner, self.name, self.restart_count, at)[:64]
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
        # A changed container is a new container to the kubelet: no back-off carried over (the image
        # back-off is kept per pod and image, and this is another image).
        self.consecutive_exits = 0
        self.pull_failures = 0
        self.pull_error_until = None
        self.pull_policy = str(spec.get("imagePullPolicy") or self.pull_policy)
        self.begin_pull(at)

    def set_reference_error(self, error: str | None, at: float) -> None:
        """What the kubelet found reading the Secrets and ConfigMaps the container's env names: a
        container waiting for one starts once it is there (the kubelet tries again on each sync)."""
        self.reference_error = error
        waiting_for_it = self.state == "stuck" and self.waiting_reason == "CreateContainerConfigError"
        if waiting_for_it and error is None and self.config_error is None:
            self._start(at)
        elif waiting_for_it and error is not None and self.config_error is None:
            self.waiting_message = error

    def set_override(self, behaviour: Behaviour | None, at: float) -> None:
        """Change how the process behaves from `at` on (None: back to what its env and image say)."""
        self.override = behaviour
        if self.state == "running":
            kept = [o for o in self.outcomes if o[0] < at]
            self.outcomes = kept + self.behaviour.process_outcomes(at)
            self.behaviour_exit = self.behaviour.process_exit(at, init=self.kind == "init")
            self._plan()
        elif self.state == "pull-backoff" and not self.behaviour.pull_error:
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
        elif self.state in ("pulling", "pull-backoff", "backoff", "pending", "stuck"):
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
    return f"{repository}@sha256:{digest('image', image)}"


_OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
DISRUPTION_TARGET = "DisruptionTarget"


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
        node_images: set[str] | None = None,
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
        self.claims = claim_names(pod)
        self.identities: dict[str, str] = {}
        owner = f"{self.namespace}/{self.name}/{self.uid}"
        self.inits = [
            ContainerRuntime(
                c,
                "sidecar" if c.get("restartPolicy") == "Always" else "init",
                owner,
                self._pull_seconds,
                scripts,
                node_images,
            )
            for c in spec.get("initContainers") or []
        ]
        self.apps = [
            ContainerRuntime(c, "app", owner, self._pull_seconds, scripts, node_images)
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
        # Set when the node's eviction manager killed the pod: (reason, message) of its Failed phase.
        self.evicted: tuple[str, str] | None = None
        self._evicted_at = at
        self.conditions: dict[str, tuple[bool, float]] = {}
        self.wake_at: float | None = None
        self.last_sent: dict[str, Any] | None = None
        self._update_conditions(at)

    @property
    def containers(self) -> list[ContainerRuntime]:
        return [*self.inits, *self.apps]

    def _pull_seconds(self, container: ContainerRuntime) -> float:
        low, high = PULL_SECONDS
        share = unit_interval(
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

    def evict(self, at: float, message: str) -> None:
        """The node's eviction manager (node pressure, a node shutdown): every container is killed at once
        and the pod ends Failed with reason Evicted. It stays on the API server until someone deletes it,
        as an evicted pod does; nothing restarts it."""
        if self.terminating or self.evicted is not None:
            return
        self.evicted = ("Evicted", message)
        self._evicted_at = at
        for container in self.containers:
            container.stop(at, at)
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
            "PodReadyToStartContainers": self.sandbox_at is not None
            and not self.finished
            and self.evicted is None,
            "Initialized": self.initialized_at is not None,
            "ContainersReady": containers_ready,
            "Ready": containers_ready and gates_ready,
        }
        for kind, value in values.items():
            previous = self.conditions.get(kind)
            if previous is None or previous[0] != value:
                self.conditions[kind] = (value, at)

    def phase(self) -> str:
        if self.evicted is not None:
            return "Failed"
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
        own = (*_OWN_CONDITIONS, DISRUPTION_TARGET) if self.evicted is not None else _OWN_CONDITIONS
        conditions.extend(c for c in observed if c.get("type") not in own)
        if self.evicted is not None:
            # As the kubelet marks a pod it evicts (PodDisruptionConditions).
            conditions.append(
                {
                    "type": DISRUPTION_TARGET,
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": self.evicted[1],
                    "lastProbeTime": None,
                    "lastTransitionTime": clock.timestamp(self._evicted_at),
                }
            )
        status: dict[str, Any] = {
            "phase": self.phase(),
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": clock.timestamp(self.admitted_at),
            # The kubelet reports app containers sorted by name and init containers in spec order.
            "containerStatuses": [c.status(clock) for c in sorted(self.apps, key=lambda c: c.name)],
        }
        if self.evicted is not None:
            status["reason"], status["message"] = self.evicted
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

    def references(self) -> dict[str, list[EnvReference]]:
        """The Secrets and ConfigMaps each container's env and envFrom name, by container."""
        spec = self.pod.get("spec") or {}
        found: dict[str, list[EnvReference]] = {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            refs = env_references(container)
            if refs:
                found[str(container.get("name", ""))] = refs
        return found

    def set_reference_errors(self, errors: Mapping[str, str | None], at: float) -> None:
        self.advance(at)
        for container in self.containers:
            if container.name in errors:
                container.set_reference_error(errors[container.name], at)
        self._step(at)

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


def grace_seconds(pod: Mapping[str, Any]) -> float:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if value is not None:
            return max(0.0, float(value))
    return 30.0


def emptydir_identity(uid: str, volume: str) -> str:
    return "emptydir-" + digest("emptyDir", uid, volume)[:20]


@dataclass(frozen=True)
class EnvReference:
    """A Secret or ConfigMap (kind `secret` or `configmap`) an env var or envFrom names; `key` None for
    envFrom (every key), `optional` when the container may start without it."""

    kind: str
    name: str
    key: str | None
    optional: bool


def env_references(container: Mapping[str, Any]) -> list[EnvReference]:
    refs: list[EnvReference] = []
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        for kind, field in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
            ref = source.get(field)
            if ref and ref.get("name"):
                refs.append(
                    EnvReference(kind, str(ref["name"]), str(ref.get("key", "")), bool(ref.get("optional")))
                )
    for env_from in container.get("envFrom") or []:
        for kind, field in (("secret", "secretRef"), ("configmap", "configMapRef")):
            ref = env_from.get(field)
            if ref and ref.get("name"):
                refs.append(EnvReference(kind, str(ref["name"]), None, bool(ref.get("optional"))))
    return refs


def reference_problem(
    refs: list[EnvReference], namespace: str, found: Mapping[tuple[str, str], Mapping[str, Any] | None]
) -> str | None:
    """The kubelet's error making the container's environment (kubelet_pods.go), or None: `secret "x" not
    found`, `configmap "x" not found`, `couldn't find key k in Secret ns/x`. `found` holds each object
    read, None for one that does not exist."""
    for ref in refs:
        obj = found.get((ref.kind, ref.name))
        if obj is None:
            if ref.optional:
                continue
            return f'{ref.kind} "{ref.name}" not found'
        if ref.key is None:
            continue
        keys = {*(obj.get("data") or {}), *(obj.get("binaryData") or {})}
        if ref.key not in keys and not ref.optional:
            kind = "Secret" if ref.kind == "secret" else "ConfigMap"
            return f"couldn't find key {ref.key} in {kind} {namespace}/{ref.name}"
    return None
