"""Behaviour scripts for simulated containers and the probe arithmetic that turns them into readiness."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

BEHAVIOUR_ENV = "KUBESIM_BEHAVIOUR"

# How long a crash-looping process lives before it exits, and how long an init container
# runs before it completes, in simulated seconds.
CRASH_RUNTIME = 1.0
INIT_RUNTIME = 1.0
# How long a well-behaved process takes to exit after SIGTERM, in simulated seconds.
DEFAULT_SHUTDOWN = 1.0

# The kubelet's container restart back-off: the first restart is immediate, then 10s doubling to 5 minutes.
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
# A container that ran this long before exiting starts its back-off afresh.
BACKOFF_RESET_AFTER = 2 * BACKOFF_MAX

# (since, result): the probe endpoint answers `result` from `since` until the next entry's `since`.
Outcomes = Sequence[tuple[float, bool]]
# (at, state): the derived state becomes `state` at `at`.
Flips = list[tuple[float, bool]]


class BehaviourError(ValueError):
    """A KUBESIM_BEHAVIOUR value that does not follow the grammar."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION = r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+|\d+(?:\.\d+)?"
_TIMED_CLAUSES = ("ready-after", "fail-after", "shutdown-after")
_FLAG_CLAUSES = ("healthy", "never-ready", "crashloop", "pull-error")
# A clause as it appears inside an image tag: dash-separated, anywhere after the version.
_TAG_CLAUSE = re.compile(
    rf"(?:^|-)(healthy|never-ready|crashloop|pull-error|(?:ready|fail|shutdown)-after-(?:{_DURATION}))(?=-|$)"
)


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `2m`, `1h`, `1m30s`, `500ms` or a bare number of seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        pos = match.end()
    if pos != len(text) or not text:
        raise BehaviourError(f"{text!r} is not a duration such as 30s, 2m or 1m30s")
    return total


def _format_duration(seconds: float) -> str:
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Behaviour:
    """How one simulated process behaves; the default is a healthy process that is ready at once."""

    never_ready: bool = False
    crashloop: bool = False
    pull_error: bool = False
    ready_after: float | None = None
    fail_after: float | None = None
    shutdown_after: float | None = None

    def __str__(self) -> str:
        clauses = []
        if self.pull_error:
            clauses.append("pull-error")
        if self.crashloop:
            clauses.append("crashloop")
        if self.never_ready:
            clauses.append("never-ready")
        if self.ready_after is not None:
            clauses.append(f"ready-after-{_format_duration(self.ready_after)}")
        if self.fail_after is not None:
            clauses.append(f"fail-after-{_format_duration(self.fail_after)}")
        if self.shutdown_after is not None:
            clauses.append(f"shutdown-after-{_format_duration(self.shutdown_after)}")
        return ",".join(clauses) or "healthy"

    def with_clause(self, clause: str) -> Behaviour:
        """This behaviour with one more clause applied; a later clause overrides an earlier one."""
        clause = clause.strip().lower()
        if clause == "healthy":
            return Behaviour()
        if clause == "never-ready":
            return replace(self, never_ready=True, ready_after=None)
        if clause == "crashloop":
            return replace(self, crashloop=True)
        if clause == "pull-error":
            return replace(self, pull_error=True)
        for name in _TIMED_CLAUSES:
            if clause.startswith(name):
                rest = clause[len(name) :].lstrip("-=: ")
                if not rest:
                    raise BehaviourError(f"{name!r} needs a duration, e.g. {name}-30s")
                seconds = parse_duration(rest)
                if name == "ready-after":
                    return replace(self, ready_after=seconds, never_ready=False)
                if name == "fail-after":
                    return replace(self, fail_after=seconds)
                return replace(self, shutdown_after=seconds)
        known = ", ".join([*_FLAG_CLAUSES, *(f"{n}-<duration>" for n in _TIMED_CLAUSES)])
        raise BehaviourError(f"unknown behaviour {clause!r}; expected one of {known}")

    def process_outcomes(self, base: float) -> list[tuple[float, bool]]:
        """What a health probe sees from `base` on (the process start, or when this behaviour took effect)."""
        if self.crashloop or self.never_ready:
            return [(base, False)]
        if self.ready_after:
            return [(base, False), (base + self.ready_after, True)]
        return [(base, True)]

    def process_exit(self, base: float, init: bool = False) -> tuple[float, int] | None:
        """When and with which exit code the process ends by itself, if it does."""
        if self.crashloop:
            return base + CRASH_RUNTIME, 1
        if self.fail_after is not None:
            return base + self.fail_after, 1
        if init:
            # An init container is a task: it completes once its work (ready-after, if any) is done.
            if self.never_ready:
                return None
            return base + (self.ready_after or INIT_RUNTIME), 0
        return None

    @property
    def shutdown_seconds(self) -> float:
        return DEFAULT_SHUTDOWN if self.shutdown_after is None else self.shutdown_after


HEALTHY = Behaviour()


def parse_behaviour(text: str) -> Behaviour:
    """Parse a KUBESIM_BEHAVIOUR value: clauses separated by commas, semicolons, `+` or spaces."""
    # `ready-after 30s` and `ready-after=30s` read as `ready-after-30s` before clauses are split on spaces.
    text = re.sub(r"((?:ready|fail|shutdown)-after)[\s=:]+", r"\1-", text.strip(), flags=re.IGNORECASE)
    behaviour = HEALTHY
    for clause in re.split(r"[,;+\s]+", text):
        if clause:
            behaviour = behaviour.with_clause(clause)
    return behaviour


def image_tag(image: str) -> str:
    """The tag of an image reference (`repo/app:v2-crashloop@sha256:...` -> `v2-crashloop`), or ``""``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def behaviour_from_image(image: str) -> Behaviour | None:
    """The behaviour named by an image tag's clauses (`app:v3-ready-after-30s`), or None when it names none."""
    clauses = [m.group(1) for m in _TAG_CLAUSE.finditer(image_tag(image).lower())]
    if not clauses:
        return None
    behaviour = HEALTHY
    for clause in clauses:
        behaviour = behaviour.with_clause(clause)
    return behaviour


def container_behaviour(
    container: Mapping[str, Any], scripts: Mapping[str, Behaviour] | None = None
) -> Behaviour:
    """A container's behaviour: its KUBESIM_BEHAVIOUR env var if set, else what `scripts` (image ->
    behaviour, Kubelet.script_image) says of its image, else its image tag, else healthy.

    Raises BehaviourError when the env var does not parse, which the kubelet reports the way it
    reports a bad container config.
    """
    for env in container.get("env") or []:
        if env.get("name") == BEHAVIOUR_ENV and env.get("value") is not None:
            return parse_behaviour(str(env["value"]))
    image = str(container.get("image", ""))
    scripted = (scripts or {}).get(image)
    if scripted is not None:
        return scripted
    return behaviour_from_image(image) or HEALTHY


@dataclass(frozen=True)
class Probe:
    """The timing of a readiness, liveness or startup probe (the parts the simulation honours)."""

    initial_delay: float = 0.0
    period: float = 10.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Probe | None:
        if not spec:
            return None
        return cls(
            initial_delay=float(spec.get("initialDelaySeconds") or 0),
            period=float(spec.get("periodSeconds") or 10),
            success_threshold=max(1, int(spec.get("successThreshold") or 1)),
            failure_threshold=max(1, int(spec.get("failureThreshold") or 3)),
        )

    def tick(self, origin: float, k: int) -> float:
        """When the k-th probe (0-based) runs for a container started at `origin`."""
        return origin + self.initial_delay + k * self.period

    def first_tick_from(self, origin: float, at: float) -> int:
        """Index of the first probe that runs at or after `at`."""
        if at <= origin + self.initial_delay:
            return 0
        # The tolerance keeps a probe that lands exactly on a boundary on the boundary's side.
        return max(0, math.ceil((at - origin - self.initial_delay) / self.period - 1e-9))


def _segments(outcomes: Outcomes) -> list[tuple[float, float, bool]]:
    segments = []
    for i, (since, result) in enumerate(outcomes):
        until = outcomes[i + 1][0] if i + 1 < len(outcomes) else math.inf
        if until > since:
            segments.append((since, until, result))
    return segments


def probe_flips(origin: float, probe: Probe, outcomes: Outcomes, initial: bool) -> Flips:
    """Times at which a probed state flips, as the kubelet's thresholds decide it.

    The state starts as `initial`; it turns True after `success_threshold` consecutive successful probes
    and False after `failure_threshold` consecutive failures. Computed per segment of constant outcome
    in closed form, so a probe running every second for a week costs nothing.
    """
    state, contrary = initial, 0
    flips: Flips = []
    for since, until, result in _segments(outcomes):
        first = probe.first_tick_from(origin, since)
        if probe.tick(origin, first) >= until:
            continue
        count = math.inf if math.isinf(until) else probe.first_tick_from(origin, until) - first
        if result == state:
            contrary = 0
            continue
        needed = (probe.success_threshold if result else probe.failure_threshold) - contrary
        if count >= needed:
            state, contrary = result, 0
            flips.append((probe.tick(origin, first + needed - 1), state))
        else:
            contrary += int(count)
    return flips


def direct_flips(outcomes: Outcomes, initial: bool) -> Flips:
    """Flips of a state that follows the outcome at once (a container without a probe)."""
    state = initial
    flips: Flips = []
    for since, _until, result in _segments(outcomes):
        if result != state:
            state = result
            flips.append((since, state))
    return flips


def startup_outcome(origin: float, probe: Probe, outcomes: Outcomes) -> tuple[bool, float]:
    """(True, when) the startup probe first succeeds, or (False, when) it gives up and the container is killed."""
    kill_at = probe.tick(origin, probe.failure_threshold - 1)
    for since, until, result in _segments(outcomes):
        if not result:
            continue
        first = probe.first_tick_from(origin, since)
        at = probe.tick(origin, first)
        if at < until:
            return (True, at) if first < probe.failure_threshold else (False, kill_at)
    return False, kill_at


def outcomes_from(outcomes: Outcomes, start: float, before: bool) -> list[tuple[float, bool]]:
    """The outcomes as a probe that only starts counting at `start` sees them: `before` until then."""
    clipped: list[tuple[float, bool]] = [(-math.inf, before)]
    for since, until, result in _segments(outcomes):
        if until > start:
            clipped.append((max(since, start), result))
    return clipped


def value_at(flips: Flips, initial: bool, at: float) -> bool:
    """The state at time `at` given its flips."""
    state = initial
    for when, value in flips:
        if when > at:
            break
        state = value
    return state


def flipped_since(flips: Flips, at: float) -> float | None:
    """When the state last flipped at or before `at`, if ever."""
    last = None
    for when, _value in flips:
        if when > at:
            break
        last = when
    return last


def next_flip(flips: Flips, after: float) -> float | None:
    """The first flip strictly after `after`."""
    for when, _value in flips:
        if when > after:
            return when
    return None


def restart_delay(consecutive_exits: int) -> float:
    """Seconds the kubelet waits before restarting a container that has exited this many times in a row."""
    if consecutive_exits <= 1:
        return 0.0
    return min(BACKOFF_INITIAL * 2.0 ** min(consecutive_exits - 2, 32), BACKOFF_MAX)
