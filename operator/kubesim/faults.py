"""Seeded, reproducible fault injection for the API server: errors per verb, latency, watch disconnects."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from kubesim.errors import ApiError

READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
DEFAULT_CODES = (500, 429, 409)


@dataclass(frozen=True)
class FaultPlan:
    """What to inject. Rates are probabilities per request; the verb "*" applies to every verb.

    `codes` are the errors drawn from (uniformly): 500 InternalError, 429 TooManyRequests (with
    Retry-After), 409 Conflict (only ever for writes: a read cannot conflict), 503, 504.
    `watch_disconnect_every` closes all watch streams every that many seconds.
    `resources` limits errors and latency to these plurals (empty: all resource requests);
    discovery, OpenAPI and health endpoints are never faulted.
    """

    error_rates: dict[str, float] = field(default_factory=dict)
    codes: tuple[int, ...] = DEFAULT_CODES
    latency: float = 0.0
    latency_jitter: float = 0.0
    watch_disconnect_every: float | None = None
    retry_after_seconds: int = 1
    resources: frozenset[str] = frozenset()


class FaultInjector:
    """Decides, per request, whether to fail or delay it; configurable at runtime and thread-safe.

    Decisions come from one `random.Random(seed)`, so a test that issues the same requests in the
    same order sees the same faults. `fail_next` queues deterministic one-shot errors.
    """

    def __init__(self, plan: FaultPlan | None = None, *, seed: int | None = 0) -> None:
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._seed = seed
        self._random = random.Random(seed)
        self._one_shots: list[tuple[str, str | None, int, int]] = []
        self.injected: Counter[tuple[str, int]] = Counter()
        # Bumped on every change, so the server's disconnect ticker notices a new period.
        self.version = 0

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def configure(self, **changes: Any) -> FaultPlan:
        """Change parts of the plan (same names as FaultPlan's fields); returns the new plan."""
        if "resources" in changes:
            changes["resources"] = frozenset(changes["resources"] or ())
        if "codes" in changes:
            changes["codes"] = tuple(changes["codes"])
        with self._lock:
            self._plan = replace(self._plan, **changes)
            self.version += 1
            return self._plan

    def reset(self, seed: int | None = None) -> None:
        """No faults at all, and a fresh random sequence."""
        with self._lock:
            self._plan = FaultPlan()
            self._random = random.Random(self._seed if seed is None else seed)
            self._one_shots.clear()
            self.version += 1

    def fail_next(self, verb: str, code: int, *, resource: str | None = None, times: int = 1) -> None:
        """Fail the next `times` requests of `verb` (on `resource`, a plural, if given) with `code`."""
        with self._lock:
            self._one_shots.append((verb, resource, code, times))

    def error_for(self, verb: str, resource: str) -> ApiError | None:
        """The error to answer this request with, or None to serve it."""
        with self._lock:
            for index, (shot_verb, shot_resource, code, times) in enumerate(self._one_shots):
                if shot_verb in (verb, "*") and shot_resource in (None, resource):
                    if times <= 1:
                        del self._one_shots[index]
                    else:
                        self._one_shots[index] = (shot_verb, shot_resource, code, times - 1)
                    return self._error(verb, resource, code)
            plan = self._plan
            if plan.resources and resource not in plan.resources:
                return None
            rate = plan.error_rates.get(verb, plan.error_rates.get("*", 0.0))
            if rate <= 0 or self._random.random() >= rate:
                return None
            codes = [c for c in plan.codes if c != 409 or verb in WRITE_VERBS] or [500]
            return self._error(verb, resource, self._random.choice(codes))

    def delay_for(self, verb: str, resource: str) -> float:
        """Seconds to hold this request before serving it."""
        with self._lock:
            plan = self._plan
            if plan.latency <= 0 and plan.latency_jitter <= 0:
                return 0.0
            if plan.resources and resource not in plan.resources:
                return 0.0
            return max(0.0, plan.latency + plan.latency_jitter * self._random.random())

    def _error(self, verb: str, resource: str, code: int) -> ApiError:
        self.injected[(verb, code)] += 1
        if code == 429:
            seconds = self._plan.retry_after_seconds
            return ApiError(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later (injected fault)",
                retry_after_seconds=seconds,
            )
        if code == 409:
            return ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {resource}: the object has been modified; "
                "please apply your changes to the latest version and try again (injected fault)",
                kind=resource,
            )
        if code == 503:
            return ApiError(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request (injected fault)",
            )
        if code == 504:
            return ApiError(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted (injected fault)",
            )
        return ApiError(500, "InternalError", "Internal error occurred: injected fault")
