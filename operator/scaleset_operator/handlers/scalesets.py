"""kopf wiring: one daemon per ScaleSet that reconciles when something it depends on changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import urllib3

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP, VERSION
from scaleset_operator.control.context import RESYNC_SECONDS
from scaleset_operator.control.kube import ApiError, Fenced
from scaleset_operator.control.reconcile import Reconciler
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.leader import Leadership

log = logging.getLogger(__name__)

# A burst of pod events (a batch of ten pods turning Ready) is folded into one pass.
COALESCE_SECONDS = 0.02


@dataclass
class OperatorMemo:
    """What the handlers share: the reconciler, and a wake-up flag per ScaleSet (never any rollout state)."""

    reconciler: Reconciler | None = None
    resync_seconds: float = RESYNC_SECONDS
    wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    passes: int = 0
    # Set when replicas elect a leader (scaleset_operator.leader); None: this operator always acts.
    leadership: Leadership | None = None

    def is_active(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    async def wait_active(self, timeout: float) -> None:
        assert self.leadership is not None
        await self.leadership.wait_until_leader(timeout)

    def wake(self, namespace: str, name: str) -> None:
        waker = self.wakers.get((namespace, name))
        if waker is not None:
            waker.set()


def transient(error: BaseException) -> bool:
    """An error the API server or the network will likely not repeat: retried, logged in one line."""
    if isinstance(error, ApiError):
        return error.status in (0, 408, 409, 429) or error.status >= 500
    return isinstance(error, (urllib3.exceptions.HTTPError, OSError, TimeoutError))


def _memo(memo: Any) -> OperatorMemo:
    operator_memo = memo.get("scaleset") if hasattr(memo, "get") else None
    if not isinstance(operator_memo, OperatorMemo):
        raise RuntimeError("the operator was started without its memo (use scaleset_operator.runner)")
    return operator_memo


# On stop (operator exit, ScaleSet deleted) kopf raises `stopped` and, after cancellation_backoff, cancels
# the daemon. The daemon's waits end on `stopped`, and a pass under way (in a thread, which a cancel
# would abandon mid-write) gets the backoff to finish, so the daemon returns by itself.
@kopf.daemon(GROUP, VERSION, "scalesets", cancellation_backoff=10.0, cancellation_timeout=5.0)
async def scaleset_daemon(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, memo: Any, **_: Any
) -> None:
    assert namespace is not None  # ScaleSets are namespaced
    state = _memo(memo)
    assert state.reconciler is not None
    waker = state.wakers.setdefault((namespace, name), asyncio.Event())
    try:
        while not stopped:
            waker.clear()
            if not state.is_active():
                # A standby replica watches and serves metrics, but only the Lease holder acts.
                await _first_of(state.wait_active(timeout=state.resync_seconds), stopped)
                continue
            started = time.monotonic()
            try:
                outcome = await asyncio.to_thread(state.reconciler.reconcile, namespace, name)
            except Fenced as error:
                # The replica lost (or is giving up) the Lease mid-pass: the write was not sent, and the
                # leader's next pass reads everything again.
                log.info("reconcile of %s/%s ended: %s", namespace, name, error)
                outcome = None
            except Exception as error:  # one bad pass must not end the daemon; the next wake-up retries
                if transient(error):
                    log.warning("reconcile of %s/%s: %s; retrying in 1s", namespace, name, error)
                else:
                    log.exception("reconcile of %s/%s failed", namespace, name)
                outcome = None
            metrics.reconcile_pass(outcome is not None, time.monotonic() - started)
            state.passes += 1
            if outcome is not None:
                log.debug(
                    "%s/%s: %s, again in %.2fs %s",
                    namespace,
                    name,
                    outcome.step,
                    outcome.requeue_after or 0,
                    outcome.notes,
                )
            if outcome is not None and outcome.requeue_after is None:
                return
            timeout = (
                state.resync_seconds
                if outcome is None
                else min(outcome.requeue_after or 1e9, state.resync_seconds)
            )
            if outcome is None:
                timeout = 1.0
            if await _first_of(asyncio.wait_for(waker.wait(), timeout=timeout), stopped):
                await asyncio.sleep(COALESCE_SECONDS)
    finally:
        state.wakers.pop((namespace, name), None)


async def _first_of(wait: Awaitable[Any], stopped: kopf.DaemonStopped) -> bool:
    """Await `wait` unless the daemon is stopped first; True when `wait` ended (a timeout counts as
    not ended), False on a timeout or a stop."""
    waiting = asyncio.ensure_future(wait)
    halting = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({waiting, halting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halting.cancel()
        if not waiting.done():
            waiting.cancel()
    return waiting.done() and not waiting.cancelled() and waiting.exception() is None


@kopf.on.event(GROUP, VERSION, "scalesets")
def scaleset_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _memo(memo).wake(namespace or "", name)


@kopf.on.event("", "v1", "pods", labels={LABEL_SCALESET: kopf.PRESENT})
def instance_changed(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    _memo(memo).wake(namespace or "", labels[LABEL_SCALESET])


@kopf.on.event(GROUP, VERSION, "upgradepolicies")
def policy_changed(namespace: str | None, memo: Any, **_: Any) -> None:
    # Cheap and always right: a policy change wakes every ScaleSet of its namespace; each re-reads its ref.
    state = _memo(memo)
    for ns, scaleset in list(state.wakers):
        if ns == namespace:
            state.wake(ns, scaleset)


@kopf.on.event("", "v1", "nodes")
def node_changed(memo: Any, **_: Any) -> None:
    # A node cordoned or labelled for maintenance may hold instances of any ScaleSet: wake them all.
    state = _memo(memo)
    for namespace, scaleset in list(state.wakers):
        state.wake(namespace, scaleset)


@kopf.on.event(GROUP, VERSION, "maintenanceconfigurations")
@kopf.on.event(GROUP, VERSION, "imagecatalogs")
def maintenance_changed(memo: Any, **_: Any) -> None:
    # A window or a published version may concern any ScaleSet: wake them all; each reads what applies.
    state = _memo(memo)
    for namespace, scaleset in list(state.wakers):
        state.wake(namespace, scaleset)
