"""kopf wiring: one loop of passes per ScaleSet, woken when something it depends on changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import urllib3

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP, VERSION
from scaleset_operator.control.context import RESYNC_SECONDS, Outcome
from scaleset_operator.control.kube import ApiError, Fenced
from scaleset_operator.control.reconcile import Reconciler
from scaleset_operator.handlers.backoff import FailureBackoff
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.leader import Leadership

log = logging.getLogger(__name__)

# A burst of pod events (a batch of ten pods turning Ready) is folded into one pass.
COALESCE_SECONDS = 0.02


@dataclass
class Wakeup:
    """Wakes a ScaleSet's loop; while it backs off after a failed pass, only what may lift the failure."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    backing_off: bool = False


@dataclass
class OperatorMemo:
    """What the handlers share: the reconciler, the loop and wake-up of each ScaleSet, the back-off of
    failed passes (a rate, kept in memory: never any rollout state)."""

    reconciler: Reconciler | None = None
    resync_seconds: float = RESYNC_SECONDS
    wakers: dict[tuple[str, str], Wakeup] = field(default_factory=dict)
    loops: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    backoff: FailureBackoff = field(default_factory=FailureBackoff)
    # Passes that failed on an error the server or network will likely not repeat: a gentler schedule.
    transient_backoff: FailureBackoff = field(default_factory=FailureBackoff.for_transient_errors)
    passes: int = 0
    # Set when replicas elect a leader (scaleset_operator.leader); None: this operator always acts.
    leadership: Leadership | None = None
    # Set once the operator is stopping: no loop starts and none goes on (see runner.run).
    stopping: bool = False

    def is_active(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    async def wait_active(self, timeout: float) -> None:
        assert self.leadership is not None
        await self.leadership.wait_until_leader(timeout)

    def wake(self, namespace: str, name: str, urgent: bool = True) -> None:
        """Run a pass of the ScaleSet soon. A change that cannot lift a refusal (`urgent=False`: a node's
        heartbeat) does not cut a back-off short; the pass after the back-off reads everything anyway."""
        waker = self.wakers.get((namespace, name))
        if waker is not None and (urgent or not waker.backing_off):
            waker.event.set()

    def start(self, namespace: str, name: str) -> None:
        """The ScaleSet's loop of passes, started unless it runs."""
        key = (namespace, name)
        if key not in self.loops and not self.stopping:
            self.wakers.setdefault(key, Wakeup())
            self.loops[key] = asyncio.create_task(
                run_passes(self, namespace, name), name=f"scaleset {namespace}/{name}"
            )

    async def stop(self, namespace: str | None = None, name: str | None = None) -> None:
        """End the loop of one ScaleSet (deleted), or of every one (the operator stops: then for good)."""
        if namespace is None:
            self.stopping = True
        keys = [k for k in self.loops if namespace is None or k == (namespace, name)]
        tasks = [self.loops.pop(key) for key in keys]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for key in keys:
            self.wakers.pop(key, None)
            self.backoff.forget(key)
            self.transient_backoff.forget(key)


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


async def run_passes(state: OperatorMemo, namespace: str, name: str) -> None:
    """Reconcile the ScaleSet until it is gone: again when something changes, when the pass asked to
    look again, or, after a pass that failed, once its back-off has passed.

    A loop of the operator's own rather than a kopf daemon: kopf puts a finalizer on every object a
    daemon runs for, and a ScaleSet needs none (its pods and claims carry owner references for the
    garbage collector), so nothing blocks its deletion while the operator is away or being uninstalled.
    """
    key = (namespace, name)
    waker = state.wakers.setdefault(key, Wakeup())
    try:
        while True:
            waker.event.clear()
            waker.backing_off = False
            if not state.is_active():
                # A standby replica watches and serves metrics, but only the Lease holder acts.
                await state.wait_active(timeout=state.resync_seconds)
                continue
            outcome, error = await _pass(state, namespace, name)
            if outcome.requeue_after is None:
                return
            if outcome.failure is not None and error is not None and transient(error):
                # Any change may find the server answering again: no wake-up is held back (beyond the
                # server's Retry-After, if it sent one).
                timeout = state.transient_backoff.when(key, outcome.retry_after)
                log.warning("reconcile of %s/%s: %s; retrying in %.1fs", namespace, name, error, timeout)
            elif outcome.failure is not None:
                timeout = state.backoff.when(key, outcome.retry_after)
                waker.backing_off = True
                if error is None:  # a refusal, reported in the ScaleSet's conditions
                    log.info("%s/%s: %s; retrying in %.1fs", namespace, name, outcome.failure, timeout)
                else:
                    log.error(
                        "reconcile of %s/%s failed; retrying in %.1fs",
                        namespace,
                        name,
                        timeout,
                        exc_info=error,
                    )
            else:
                state.backoff.forget(key)
                state.transient_backoff.forget(key)
                timeout = min(outcome.requeue_after, state.resync_seconds)
            waited_from = asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(waker.event.wait(), timeout=timeout)
                await asyncio.sleep(COALESCE_SECONDS)
            except TimeoutError:
                pass
            if outcome.failure is not None and outcome.retry_after:
                # The server said when to come back (Retry-After): no wake-up brings the pass sooner.
                await asyncio.sleep(
                    max(0.0, outcome.retry_after - (asyncio.get_running_loop().time() - waited_from))
                )
    finally:
        if state.loops.get(key) is asyncio.current_task():
            del state.loops[key]
            state.wakers.pop(key, None)


async def _pass(state: OperatorMemo, namespace: str, name: str) -> tuple[Outcome, Exception | None]:
    """One pass, and the exception it raised if it did: one line for an error the server or network
    will not repeat, a traceback for anything else (a bug); either way retried after the back-off."""
    assert state.reconciler is not None
    started = time.monotonic()
    raised: Exception | None = None
    try:
        outcome = await asyncio.to_thread(state.reconciler.reconcile, namespace, name)
    except Fenced as error:
        # The replica lost (or is giving up) the Lease mid-pass: the write was not sent, and the
        # leader's next pass reads everything again. Not a failure of the ScaleSet: no back-off.
        log.info("reconcile of %s/%s ended: %s", namespace, name, error)
        metrics.reconcile_pass(False, time.monotonic() - started, "Fenced")
        state.passes += 1
        return Outcome(requeue_after=1.0, step="Fenced"), None
    except Exception as error:  # one bad pass must not end the loop; the back-off retries it
        raised = error
        outcome = _failed(error)
    metrics.reconcile_pass(raised is None, time.monotonic() - started, outcome.failure)
    state.passes += 1
    log.debug(
        "%s/%s: %s, again in %.2fs %s",
        namespace,
        name,
        outcome.step,
        outcome.requeue_after or 0,
        outcome.notes,
    )
    return outcome, raised


def _failed(error: Exception) -> Outcome:
    if isinstance(error, ApiError):
        return Outcome.failed(error.reason or str(error.status), retry_after=error.retry_after)
    return Outcome.failed("Unreachable" if transient(error) else "Error")


@kopf.on.event(GROUP, VERSION, "scalesets")
async def scaleset_changed(type: str | None, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    state = _memo(memo)
    if type == "DELETED":
        await state.stop(namespace or "", name)
        return
    state.start(namespace or "", name)
    state.wake(namespace or "", name)


@kopf.on.event("", "v1", "pods", labels={LABEL_SCALESET: kopf.PRESENT})
async def instance_changed(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    _memo(memo).wake(namespace or "", labels[LABEL_SCALESET])


@kopf.on.cleanup()
async def stop_passes(memo: Any, **_: Any) -> None:
    await _memo(memo).stop()


@kopf.on.event(GROUP, VERSION, "upgradepolicies")
async def policy_changed(namespace: str | None, memo: Any, **_: Any) -> None:
    # Cheap and always right: a policy change wakes every ScaleSet of its namespace; each re-reads its ref.
    state = _memo(memo)
    for ns, scaleset in list(state.wakers):
        if ns == namespace:
            state.wake(ns, scaleset)


@kopf.on.event("", "v1", "nodes")
async def node_changed(memo: Any, **_: Any) -> None:
    # A node cordoned or labelled for maintenance may hold instances of any ScaleSet: wake them all,
    # but not out of a back-off (nodes change all the time: each heartbeat is an event).
    state = _memo(memo)
    for namespace, scaleset in list(state.wakers):
        state.wake(namespace, scaleset, urgent=False)


@kopf.on.event(GROUP, VERSION, "maintenanceconfigurations")
@kopf.on.event(GROUP, VERSION, "imagecatalogs")
async def maintenance_changed(memo: Any, **_: Any) -> None:
    # A window or a published version may concern any ScaleSet: wake them all; each reads what applies.
    state = _memo(memo)
    for namespace, scaleset in list(state.wakers):
        state.wake(namespace, scaleset)
