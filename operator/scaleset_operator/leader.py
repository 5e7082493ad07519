"""Leader election over a coordination.k8s.io Lease: of several operator replicas, only the holder writes.

The algorithm is client-go's (`tools/leaderelection`). A replica takes the Lease when it is free, or
when its record has not changed for the duration the record itself names (`leaseDurationSeconds`),
counted by the replica's own clock from when it saw the record change: timestamps written by other
nodes are never compared with this node's clock. The holder renews it every `retry_period`.

The guarantee: a holder stops every write before its Lease could have expired for the others. A
follower saw the holder's last renewal no earlier than the holder began it, so the Lease cannot lapse
for anyone before `start of the last successful renewal + lease_duration`; the holder's fence closes at
`start of the last successful renewal + renew_deadline`, by a monotonic clock, and `renew_deadline` is
shorter. One deadline bounds a whole renewal (its reads, writes and retries: every request's timeout
is what is left of it), and every write the replica makes asks the fence first (`writing`), which
also caps the write's own timeout at the time the fence has left, so no write of this replica is
still on its way when the fence closes. The renewals run on a thread of their own, never behind
reconcile passes or endpoint requests in the event loop's executor. A replica that stops closes the
fence, waits for its last write to end, and only then releases the Lease, so that a standby takes over
at once rather than after the Lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from scaleset_operator.control.kube import ApiError, Fenced, Kube, group_path
from scaleset_operator.metrics import LEADER

log = logging.getLogger(__name__)


def default_identity() -> str:
    """The pod name (from the downward API or the hostname) with a suffix unique to this process."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leadership:
    """One replica's hold on the Lease: the renewal thread, and the fence every write of the replica asks."""

    def __init__(
        self,
        kube: Kube,  # for the Lease alone: its own connections, not shared with the reconciler's
        namespace: str,
        name: str = "scaleset-operator",
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "--lease-duration must exceed the renew deadline, which must exceed the retry period."
            )
        self.kube = kube
        self.path = group_path("coordination.k8s.io", "v1", "leases", namespace)
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.wall = wall
        # Start (by `clock`) of the last round that left this replica holding the Lease; None: not held.
        self._renewed_at: float | None = None
        self._resigned = False
        self._writes = 0
        self._admission = threading.Lock()  # a write is admitted, or the fence closed, never both
        self._reporting = threading.Lock()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._reported = False
        self._thread: threading.Thread | None = None
        self._on_change: Callable[[bool], None] | None = None
        self._stop = threading.Event()
        LEADER.set(0)

    # ------------------------------------------------------------------ the fence

    def valid_for(self) -> float:
        """Seconds left before this replica must stop writing (0 when it must not write at all)."""
        renewed_at = self._renewed_at
        if renewed_at is None or self._resigned:
            return 0.0
        return max(0.0, renewed_at + self.renew_deadline - self.clock())

    @property
    def is_leader(self) -> bool:
        return self.valid_for() > 0

    @contextlib.contextmanager
    def writing(self) -> Iterator[float]:
        """Admit one write: yields the seconds it may take; raises Fenced when none may be sent now."""
        with self._admission:
            remaining = self.valid_for()
            if remaining <= 0:
                raise Fenced(
                    f"not sent: {self.identity} is not sure it holds the Lease {self.name} "
                    "(a standby, one that could not renew in time, or one stopping)"
                )
            self._writes += 1
        try:
            yield remaining
        finally:
            with self._admission:
                self._writes -= 1

    @property
    def writes_in_flight(self) -> int:
        return self._writes

    def resign(self) -> None:
        """Close the fence for good: no write of this replica starts after this call."""
        with self._admission:
            self._resigned = True
        self._report()

    async def wait_until_leader(self, timeout: float) -> None:
        """Return when this replica leads, or after `timeout` seconds."""
        deadline = self.clock() + timeout
        while not self.is_leader and self.clock() < deadline:
            await asyncio.sleep(min(0.1, self.retry_period))

    # ------------------------------------------------------------------ the renewal thread

    async def run(self, stop: asyncio.Event, on_change: Callable[[bool], None] | None = None) -> None:
        """Hold the Lease (renewing on a thread of its own) until `stop` is set; then close the fence,
        wait for the last write to end and release the Lease."""
        self._stop.clear()
        self._on_change = on_change
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"lease-{self.name}", daemon=True
        )
        self._thread.start()
        try:
            await stop.wait()
        finally:
            self.resign()
            # Every admitted write's timeout ends with the fence, so this wait is bounded by it.
            deadline = self.clock() + self.renew_deadline + 1.0
            while self._writes and self.clock() < deadline:
                await asyncio.sleep(0.02)
            self._stop.set()
            while self._thread.is_alive():
                await asyncio.sleep(0.02)
            self._report()

    def _renew_until_stopped(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            self.renew_round(started)
            self._report()
            # The next try a retry period after this one began; sooner to report a fence closing.
            wait = started + self.retry_period - self.clock()
            closes_in = self.valid_for()
            if 0 < closes_in < wait:
                wait = closes_in
            self._stop.wait(max(0.0, wait))
            self._report()
        if self._renewed_at is not None:
            self.release()

    def renew_round(self, started: float) -> bool:
        """One try at acquiring or renewing, started at `started` (by `clock`); True when held after it.

        Its requests share one deadline: a holder's fence (the whole renewal, retries included, must
        end before it), or `renew_deadline` for a replica acquiring the Lease.
        """
        holding, renewed_at = self.is_leader, self._renewed_at
        deadline = (renewed_at if holding and renewed_at is not None else started) + self.renew_deadline
        try:
            held = self.try_acquire_or_renew(deadline)
        except Exception:  # any failure to talk to the API server counts as a missed renewal
            log.warning("Lease %s: could not reach the API server", self.name, exc_info=True)
            held = False
        if held and not self._resigned:
            self._renewed_at = started
        elif not held and self._held_by_other():
            self._renewed_at = None  # another replica holds it: stop writing at once
        if holding and not self.is_leader:
            log.warning(
                "Lease %s: not renewed within %.1fs of the last renewal, standing down",
                self.name,
                self.renew_deadline,
            )
        return held

    def _report(self) -> None:
        with self._reporting:
            leader = self.is_leader
            if leader == self._reported:
                return
            self._reported = leader
            if leader:
                log.info("Lease %s: %s is now the active replica", self.name, self.identity)
            else:
                log.info("Lease %s: %s is a standby", self.name, self.identity)
            LEADER.set(1 if leader else 0)
            if self._on_change is not None:
                self._on_change(leader)

    def _held_by_other(self) -> bool:
        return self._observed is not None and self._observed[0] not in ("", None, self.identity)

    # ------------------------------------------------------------------ one round against the API

    def _left(self, deadline: float) -> float:
        left = deadline - self.clock()
        if left <= 0:
            raise TimeoutError(f"Lease {self.name}: the renew deadline passed")
        return left

    def try_acquire_or_renew(self, deadline: float | None = None) -> bool:
        """One round of client-go's tryAcquireOrRenew, every request within `deadline` (by `clock`):
        True when this replica holds the Lease after it."""
        if deadline is None:
            deadline = self.clock() + self.renew_deadline
        now_wall = self.wall()
        path = f"{self.path}/{self.name}"
        lease = self.kube.get_or_none(path, timeout=self._left(deadline))
        if lease is None:
            spec = self._spec(now_wall, acquired=now_wall, transitions=0)
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": spec,
            }
            try:
                self.kube.create(self.path, body, timeout=self._left(deadline))
            except ApiError as error:
                if error.status == 409:  # another replica created it first
                    return False
                raise
            self._remember(spec)
            return True
        spec = lease.get("spec") or {}
        self._remember(spec)
        holder = spec.get("holderIdentity") or ""
        if (
            holder
            and holder != self.identity
            and self.clock() < self._observed_at + self._recorded_duration(spec)
        ):
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = spec.get("acquireTime") or _micro_time(now_wall)
        else:
            acquired = _micro_time(now_wall)
            transitions += 1
        lease["spec"] = self._spec(now_wall, acquired=acquired, transitions=transitions)
        try:
            updated = self.kube.update(path, lease, timeout=self._left(deadline))
        except ApiError as error:
            if error.status == 409:  # someone else wrote it since we read it
                return False
            raise
        self._remember(updated.get("spec") or lease["spec"])
        return True

    def _recorded_duration(self, spec: dict[str, Any]) -> float:
        """The duration the holder wrote in the Lease: its own flag, which may differ from this one's."""
        try:
            recorded = float(spec.get("leaseDurationSeconds") or 0)
        except (TypeError, ValueError):
            recorded = 0.0
        return recorded if recorded > 0 else self.lease_duration

    def release(self) -> None:
        """Give the Lease up (holder cleared), so a standby need not wait for it to expire. Call it only
        once this replica's writes have stopped (`resign`, then `wait_writes_stopped`)."""
        deadline = self.clock() + self.renew_deadline
        path = f"{self.path}/{self.name}"
        try:
            lease = self.kube.get_or_none(path, timeout=self._left(deadline))
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(self.wall()),
            }
            self.kube.update(path, lease, timeout=self._left(deadline))
            self._renewed_at = None
            log.info("Lease %s: released by %s", self.name, self.identity)
        except Exception:  # releasing is a courtesy: the Lease expires anyway
            log.warning("Lease %s: could not release it", self.name, exc_info=True)

    def _spec(self, now_wall: float, acquired: Any, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            # Rounded up: a follower must never count less than this replica's fence assumes.
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
            "acquireTime": acquired if isinstance(acquired, str) else _micro_time(acquired),
            "renewTime": _micro_time(now_wall),
            "leaseTransitions": transitions,
        }

    def _remember(self, spec: dict[str, Any]) -> None:
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()
