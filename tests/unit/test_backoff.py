"""The back-off between failed passes: client-go's ItemExponentialFailureRateLimiter with wait.Jitter,
and the loop of passes that uses it (in loop time, with a reconciler that fails as told)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.control.context import Outcome
from scaleset_operator.control.kube import ApiError
from scaleset_operator.handlers import scalesets
from scaleset_operator.handlers.backoff import FailureBackoff
from scaleset_operator.handlers.scalesets import OperatorMemo, run_passes


def test_failures_in_a_row_double_from_one_second_to_five_minutes() -> None:
    # ItemExponentialFailureRateLimiter: the n-th failure (from 0) waits baseDelay * 2^n, capped at maxDelay.
    backoff = FailureBackoff(random=lambda: 0.0)
    delays = [backoff.when("web") for _ in range(12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_a_pass_that_works_starts_the_back_off_again() -> None:
    backoff = FailureBackoff(random=lambda: 0.0)
    for _ in range(5):
        backoff.when("web")
    backoff.forget("web")
    assert backoff.when("web") == 1


def test_each_scaleset_backs_off_on_its_own() -> None:
    backoff = FailureBackoff(random=lambda: 0.0)
    for _ in range(4):
        backoff.when(("a", "web"))
    assert backoff.when(("b", "web")) == 1
    assert backoff.retries(("a", "web")) == 4


def test_retry_after_is_a_floor() -> None:
    backoff = FailureBackoff(random=lambda: 0.0)
    assert backoff.when("web", retry_after=7) == 7
    assert backoff.when("web", retry_after=0.5) == 2  # the back-off is longer than the server asked


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0, max_value=0.999999))
def test_jitter_adds_at_most_a_tenth_and_never_shortens(failures: int, draw: float) -> None:
    # wait.Jitter(duration, maxFactor): duration + rand * maxFactor * duration.
    plain = FailureBackoff(random=lambda: 0.0)
    jittered = FailureBackoff(random=lambda: draw)
    for _ in range(failures):
        plain.when("web")
        jittered.when("web")
    base = plain.when("web")
    delay = jittered.when("web")
    assert base <= delay <= base * 1.1


class _Reconciler:
    """Answers each pass from a script; records the loop time of every pass."""

    def __init__(self, answers: list[Outcome | Exception]) -> None:
        self.answers = answers
        self.at: list[float] = []

    def reconcile(self, namespace: str, name: str) -> Outcome:
        self.at.append(asyncio.get_running_loop().time())
        answer = self.answers.pop(0) if self.answers else Outcome(requeue_after=None)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def in_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pass runs in the loop, so that loop time alone decides when the next one comes.
    async def direct(function: Any, *args: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(scalesets.asyncio, "to_thread", direct)


def _memo(reconciler: _Reconciler) -> OperatorMemo:
    return OperatorMemo(
        reconciler=reconciler,  # type: ignore[arg-type]
        backoff=FailureBackoff(random=lambda: 0.0),
        transient_backoff=FailureBackoff(base=0.1, cap=5.0, random=lambda: 0.0),
    )


@pytest.mark.looptime
async def test_a_refusal_is_retried_after_one_two_four_seconds_not_every_second(in_loop: None) -> None:
    reconciler = _Reconciler([Outcome.failed("QuotaExceeded") for _ in range(6)])
    await run_passes(_memo(reconciler), "ns", "web")
    start = reconciler.at[0]
    assert [round(t - start, 2) for t in reconciler.at] == [0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0]


@pytest.mark.looptime
async def test_an_api_error_honours_its_retry_after(in_loop: None) -> None:
    too_many = ApiError(429, "TooManyRequests", "slow down", retry_after=7)
    reconciler = _Reconciler([too_many, Outcome(requeue_after=None)])
    await run_passes(_memo(reconciler), "ns", "web")
    assert reconciler.at[1] - reconciler.at[0] == pytest.approx(7.0)


@pytest.mark.looptime
async def test_no_change_brings_the_pass_before_the_servers_retry_after(in_loop: None) -> None:
    # apimachinery: a 429 "means ... the client must wait to perform the action again"; a change of the
    # ScaleSet's own pods (the operator's own writes among them) is no leave to come back sooner.
    too_many = ApiError(429, "TooManyRequests", "slow down", retry_after=3)
    reconciler = _Reconciler([too_many, Outcome(requeue_after=None)])
    state = _memo(reconciler)
    task = asyncio.create_task(run_passes(state, "ns", "web"))
    await asyncio.sleep(1)
    state.wake("ns", "web")
    await asyncio.sleep(1)
    assert len(reconciler.at) == 1, "woken at 1 s, it waits out the 3 s asked for"
    await task
    assert reconciler.at[1] - reconciler.at[0] == pytest.approx(3.0)


@pytest.mark.looptime
async def test_a_pass_that_works_resets_the_back_off(in_loop: None) -> None:
    failed = Outcome.failed("TooManyRequests")
    reconciler = _Reconciler([failed, failed, failed, Outcome(requeue_after=0.5), failed])
    await run_passes(_memo(reconciler), "ns", "web")
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(reconciler.at)]
    assert gaps == [1.0, 2.0, 4.0, 0.5, 1.0]


@pytest.mark.looptime
async def test_only_a_change_that_may_lift_a_refusal_cuts_the_back_off_short(in_loop: None) -> None:
    reconciler = _Reconciler([Outcome.failed("PodSecurityViolation") for _ in range(4)])
    state = _memo(reconciler)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run_passes(state, "ns", "web"))
    await asyncio.sleep(4.5)  # passes at 0, 1 and 3; the next is due at 7
    state.wake("ns", "web", urgent=False)  # a node's heartbeat
    await asyncio.sleep(1)
    assert len(reconciler.at) == 3
    state.wake("ns", "web")  # the ScaleSet, its policy or one of its pods changed
    await asyncio.sleep(0.1)
    assert len(reconciler.at) == 4
    assert reconciler.at[3] - loop.time() < 0.2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
async def test_an_error_the_server_will_not_repeat_is_retried_soon_and_never_slower_than_five_seconds(
    in_loop: None,
) -> None:
    # Under a flaky API most passes meet one failed request among their tens: a back-off of minutes
    # would stall a rollout the server could carry on with; 0.1 s doubling, at most 5 s.
    flaky = ApiError(500, "InternalError", "etcdserver: request timed out")
    reconciler = _Reconciler([flaky] * 8 + [Outcome(requeue_after=None)])
    await run_passes(_memo(reconciler), "ns", "web")
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(reconciler.at)]
    assert gaps == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
