"""Leader election over a coordination.k8s.io Lease: of several operator replicas, only the holder acts.

The algorithm is client-go's (`tools/leaderelection`): a replica takes the Lease when it is free or
when its record has not changed for `lease_duration` by the replica's own clock (so clock skew between
nodes does not matter), renews it every `retry_period`, and stops acting as soon as it has failed to
renew for `renew_deadline`, which is shorter than `lease_duration`: the old holder stands down before
anyone else may take over. A replica that stops cleanly releases the Lease, so a standby takes over
at once rather than after the Lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scaleset_operator.control.kube import ApiError, Kube, group_path
from scaleset_operator.metrics import LEADER

log = logging.getLogger(__name__)


def default_identity() -> str:
    """The pod name (from the downward API or the hostname) with a suffix unique to this process."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leadership:
    """One replica's view of the Lease, and the loop that acquires, renews and releases it."""

    def __init__(
        self,
        kube: Kube,  # its request timeout should be well under renew_deadline (see runner.run)
        namespace: str,
        name: str = "scaleset-operator",
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
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
        self._leader = threading.Event()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        LEADER.set(0)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait_until_leader(self, timeout: float) -> None:
        """Return when this replica leads, or after `timeout` seconds."""
        deadline = self.clock() + timeout
        while not self.is_leader and self.clock() < deadline:
            await asyncio.sleep(min(0.1, self.retry_period))

    async def run(self, stop: asyncio.Event, on_change: Callable[[bool], None] | None = None) -> None:
        """Acquire and renew the Lease until `stop` is set; then release it if held."""
        last_renewed = 0.0
        try:
            while not stop.is_set():
                try:
                    held = await asyncio.to_thread(self.try_acquire_or_renew)
                except Exception:  # any failure to talk to the API counts as a missed renewal
                    log.warning("Lease %s: could not reach the API server", self.name, exc_info=True)
                    held = False
                now = self.clock()
                if held:
                    last_renewed = now
                    self._set(True, on_change)
                elif self.is_leader and now - last_renewed >= self.renew_deadline:
                    log.warning(
                        "Lease %s: not renewed for %.1fs, standing down", self.name, now - last_renewed
                    )
                    self._set(False, on_change)
                elif self.is_leader and not held and self._held_by_other():
                    self._set(False, on_change)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_period)
        finally:
            if self.is_leader:
                self._set(False, on_change)
                await asyncio.to_thread(self.release)

    def _held_by_other(self) -> bool:
        return self._observed is not None and self._observed[0] not in ("", None, self.identity)

    def _set(self, leader: bool, on_change: Callable[[bool], None] | None) -> None:
        if leader == self.is_leader:
            return
        if leader:
            self._leader.set()
            log.info("Lease %s: %s is now the active replica", self.name, self.identity)
        else:
            self._leader.clear()
            log.info("Lease %s: %s is a standby", self.name, self.identity)
        LEADER.set(1 if leader else 0)
        if on_change is not None:
            on_change(leader)

    def try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew: True when this replica holds the Lease after it."""
        now_wall = time.time()
        lease = self.kube.get_or_none(f"{self.path}/{self.name}")
        if lease is None:
            spec = self._spec(now_wall, acquired=now_wall, transitions=0)
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": spec,
            }
            try:
                self.kube.create(self.path, body)
            except ApiError as error:
                if error.status == 409:  # another replica created it first
                    return False
                raise
            self._remember(spec)
            return True
        spec = lease.get("spec") or {}
        self._remember(spec)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and self.clock() < self._observed_at + self.lease_duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = spec.get("acquireTime") or _micro_time(now_wall)
        else:
            acquired = _micro_time(now_wall)
            transitions += 1
        lease["spec"] = self._spec(now_wall, acquired=acquired, transitions=transitions)
        try:
            updated = self.kube.update(f"{self.path}/{self.name}", lease)
        except ApiError as error:
            if error.status == 409:  # someone else wrote it since we read it
                return False
            raise
        self._remember(updated.get("spec") or lease["spec"])
        return True

    def release(self) -> None:
        """Give the Lease up (holder cleared), so a standby need not wait for it to expire."""
        try:
            lease = self.kube.get_or_none(f"{self.path}/{self.name}")
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now_wall = time.time()
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(now_wall),
            }
            self.kube.update(f"{self.path}/{self.name}", lease)
            log.info("Lease %s: released by %s", self.name, self.identity)
        except Exception:  # releasing is a courtesy: the Lease expires anyway
            log.warning("Lease %s: could not release it", self.name, exc_info=True)

    def _spec(self, now_wall: float, acquired: Any, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
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
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()
