"""Leader election rounds against an in-memory Lease, with clocks the test moves."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.control.kube import ApiError, Fenced
from scaleset_operator.leader import Leadership


class FakeLeases:
    """The Lease part of an API server: get, create, and update with resourceVersion conflicts."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.reachable = True

    def _check(self) -> None:
        if not self.reachable:
            raise ApiError(503, "ServiceUnavailable", "the API server is unreachable")

    def get_or_none(self, path: str, timeout: float | None = None) -> dict[str, Any] | None:
        self._check()
        found = self.stored.get(path)
        return copy.deepcopy(found) if found else None

    def create(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        self._check()
        full = f"{path}/{body['metadata']['name']}"
        if full in self.stored:
            raise ApiError(409, "AlreadyExists", "exists")
        return self._store(full, body)

    def update(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        self._check()
        if body["metadata"].get("resourceVersion") != self.stored[path]["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._store(path, body)

    def _store(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.stored[path] = stored
        return copy.deepcopy(stored)

    def holder(self) -> str:
        (lease,) = self.stored.values()
        return str(lease["spec"]["holderIdentity"])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replica(
    leases: FakeLeases,
    identity: str,
    clock: Callable[[], float] = time.monotonic,
    durations: tuple[float, float, float] = (15, 10, 2),
) -> Leadership:
    """A replica with --lease-duration, renew deadline and retry period `durations`."""
    return Leadership(
        leases,  # type: ignore[arg-type]
        "ops",
        identity=identity,
        lease_duration=durations[0],
        renew_deadline=durations[1],
        retry_period=durations[2],
        clock=clock,
    )


async def leading(leader: Leadership) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Start `leader`'s renewal thread and wait until it holds the Lease."""
    stop = asyncio.Event()
    task = asyncio.create_task(leader.run(stop))
    await leader.wait_until_leader(timeout=5)
    assert leader.is_leader
    return stop, task


def test_the_first_takes_the_lease_and_the_second_waits_while_it_is_renewed() -> None:
    leases, clock_a, clock_b = FakeLeases(), Clock(), Clock()
    a, b = replica(leases, "a", clock_a), replica(leases, "b", clock_b)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    for _ in range(20):  # a renews every 2 s for 40 s; b never sees the record stand still for 15 s
        clock_a.now += 2
        clock_b.now += 2
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
    assert leases.holder() == "a"
    (lease,) = leases.stored.values()
    assert lease["spec"]["leaseTransitions"] == 0
    assert lease["spec"]["leaseDurationSeconds"] == 15


def test_a_silent_leader_is_replaced_only_after_the_lease_duration_by_the_standbys_own_clock() -> None:
    leases, clock_a, clock_b = FakeLeases(), Clock(), Clock()
    clock_b.now = 1_000_000.0  # clocks of two nodes need not agree
    a, b = replica(leases, "a", clock_a), replica(leases, "b", clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock_b.now += 14.9
    assert not b.try_acquire_or_renew(), "not before the Lease's duration has passed without a renewal"
    clock_b.now += 0.2
    assert b.try_acquire_or_renew()
    assert leases.holder() == "b"
    (lease,) = leases.stored.values()
    assert lease["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew(), "the old leader sees the new holder and does not take it back"


def test_a_released_lease_is_taken_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = replica(leases, "a", clock), replica(leases, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert leases.holder() == ""
    assert b.try_acquire_or_renew()


def test_two_replicas_racing_for_one_update_cannot_both_win() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = replica(leases, "a", clock), replica(leases, "b", clock)
    assert a.try_acquire_or_renew()
    a.release()
    stale = leases.get_or_none("/apis/coordination.k8s.io/v1/namespaces/ops/leases/scaleset-operator")
    assert b.try_acquire_or_renew()
    # a's write based on what it read before b's is refused by the resourceVersion.
    leases.get_or_none = lambda path, timeout=None: copy.deepcopy(stale)  # type: ignore[method-assign]
    assert not a.try_acquire_or_renew()
    assert leases.holder() == "b"


async def test_a_leader_that_cannot_renew_stands_down_within_the_renew_deadline() -> None:
    leases = FakeLeases()
    leader = replica(leases, "a", durations=(3, 2, 0.2))
    stop = asyncio.Event()
    changes: list[bool] = []
    task = asyncio.create_task(leader.run(stop, changes.append))
    await leader.wait_until_leader(timeout=5)
    assert leader.is_leader
    leases.reachable = False
    lost_at = asyncio.get_running_loop().time()
    while leader.is_leader:
        await asyncio.sleep(0.01)
    stood_down = asyncio.get_running_loop().time() - lost_at
    # Counted from the last renewal, so at most the renew deadline plus one round: before the
    # Lease's duration, when a standby may take over.
    assert stood_down < 3, "before a standby may take over"
    assert stood_down >= 1.5, "a failed renewal or two is tolerated"
    leases.reachable = True
    await leader.wait_until_leader(timeout=5)
    stop.set()
    await task
    assert changes == [True, False, True, False]
    assert leases.holder() == "", "a clean stop releases the Lease"


def test_durations_out_of_order_are_refused_naming_the_option() -> None:
    with pytest.raises(ValueError, match="--lease-duration"):
        Leadership(FakeLeases(), "ops", lease_duration=5, renew_deadline=10, retry_period=2)  # type: ignore[arg-type]


async def test_a_renewal_is_not_delayed_by_a_saturated_default_executor() -> None:
    """Reconcile passes and endpoint requests run in the loop's default executor: a renewal must not
    wait for a free worker behind them, or the leader stands down (or worse, acts on a lapsed Lease)."""
    leases = FakeLeases()
    leader = replica(leases, "a", durations=(1.5, 1.0, 0.1))
    stop, task = await leading(leader)
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # Every worker of the default executor busy for three renew deadlines (slow passes, a hung call).
    busy = [loop.run_in_executor(None, release.wait, 3.0) for _ in range(64)]
    renewals_before = leases.version
    stood_down = False
    for _ in range(30):
        await asyncio.sleep(0.1)
        stood_down = stood_down or not leader.is_leader
    renewals = leases.version - renewals_before
    release.set()
    await asyncio.gather(*busy)
    stop.set()
    await task
    assert not stood_down, "the leader kept its Lease while every executor worker was busy"
    assert renewals >= 10, f"renewed every retry period for 3 s, not {renewals} times"


# ---------------------------------------------------------------------- the fence, by explicit clocks
#
# client-go's guarantee (tools/leaderelection/leaderelection.go): a follower "needs to wait a full
# LeaseDuration without observing a change to the record before it can attempt to take over", and
# RenewDeadline "is the duration that the acting master will retry refreshing leadership before giving
# up". A follower saw the last renewal no earlier than its holder began it, so the holder is safe until
# (start of its last successful renewal + LeaseDuration); its fence closes at that start + RenewDeadline.


def test_the_fence_closes_at_the_start_of_the_last_renewal_plus_the_renew_deadline() -> None:
    leases, clock = FakeLeases(), Clock()
    leader = replica(leases, "a", clock)
    assert leader.renew_round(clock.now)
    started = clock.now
    clock.now = started + 10 - 0.001
    assert leader.is_leader
    with leader.writing() as remaining:
        assert remaining == pytest.approx(0.001), "a write may take only what the fence has left"
    clock.now = started + 10
    assert not leader.is_leader, "no renewal has failed yet: the clock alone closes the fence"
    with pytest.raises(Fenced), leader.writing():
        pass


class SlowLeases(FakeLeases):
    """Each call takes `latency` seconds of the test's clock."""

    def __init__(self, clock: Clock, latency: float) -> None:
        super().__init__()
        self.clock, self.latency = clock, latency

    def _check(self) -> None:
        self.clock.now += self.latency
        super()._check()


def test_a_slow_renewal_counts_from_when_it_began_not_from_its_answer() -> None:
    clock = Clock()
    leases = SlowLeases(clock, latency=1.5)
    leader = replica(leases, "a", clock)
    started = clock.now
    assert leader.renew_round(started)
    assert clock.now == started + 3, "a read and a create, 1.5 s each"
    clock.now = started + 10 - 0.01
    assert leader.is_leader
    clock.now = started + 10
    assert not leader.is_leader, "not 10 s after the answer: the record may have changed at its start"


def test_a_renewal_gives_up_at_the_fence_rather_than_run_past_it() -> None:
    clock = Clock()
    leases = SlowLeases(clock, latency=0.0)
    leader = replica(leases, "a", clock)
    first = clock.now
    assert leader.renew_round(first)
    clock.now = first + 9
    leases.latency = 2.0  # the read alone would end past the fence
    seen: list[float | None] = []
    original = leases.get_or_none

    def get_or_none(path: str, timeout: float | None = None) -> dict[str, Any] | None:
        seen.append(timeout)
        return original(path, timeout)

    leases.get_or_none = get_or_none  # type: ignore[method-assign]
    leader.renew_round(clock.now)
    assert seen == [pytest.approx(1.0)], "the read's timeout is what is left of the fence"


def test_followers_wait_the_duration_recorded_in_the_lease_not_their_own_flag() -> None:
    leases, clock_a, clock_b = FakeLeases(), Clock(), Clock()
    a = replica(leases, "a", clock_a)  # --lease-duration 15
    b = replica(leases, "b", clock_b, durations=(6, 4, 1))
    assert a.renew_round(clock_a.now)
    assert not b.renew_round(clock_b.now)
    clock_b.now += 7
    assert not b.renew_round(clock_b.now), "a's record says 15 s; b's own 6 s flag does not apply to it"
    clock_b.now += 8.1
    assert b.renew_round(clock_b.now)
    (lease,) = leases.stored.values()
    assert lease["spec"]["leaseDurationSeconds"] == 6, "b records its own duration for the others"


class SimulatedLeases(FakeLeases):
    """An API server reached over a network whose delays the test draws: a request arrives `there`
    seconds after it is sent and its answer `back` seconds later; a request whose timeout runs out
    before it arrives is lost (its sender gave up on it), one whose answer comes too late was applied."""

    def __init__(self, world: dict[str, float]) -> None:
        super().__init__()
        self.world = world
        self.there, self.back = 0.0, 0.0

    def _travel(self, timeout: float | None, apply: Any) -> Any:
        limit = float("inf") if timeout is None else timeout
        if not self.reachable or self.there >= limit:
            self.world["t"] += min(limit, 30.0)
            raise TimeoutError("no answer")
        self.world["t"] += self.there
        result = apply()
        if self.there + self.back >= limit:
            self.world["t"] += limit - self.there
            raise TimeoutError("the answer came too late")
        self.world["t"] += self.back
        return result

    def get_or_none(self, path: str, timeout: float | None = None) -> dict[str, Any] | None:
        return self._travel(timeout, lambda: FakeLeases.get_or_none(self, path))  # type: ignore[no-any-return]

    def create(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self._travel(timeout, lambda: FakeLeases.create(self, path, body))  # type: ignore[no-any-return]

    def update(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self._travel(timeout, lambda: FakeLeases.update(self, path, body))  # type: ignore[no-any-return]


_NETWORK = st.tuples(
    # outages: (start, length) in seconds of the run
    st.lists(st.tuples(st.floats(0, 60), st.sampled_from([1.0, 3.0, 5.0, 7.0, 12.0, 20.0])), max_size=4),
    # a request's way there and its answer's way back
    st.sampled_from([0.0, 0.05, 0.5, 1.5, 3.5]),
    st.sampled_from([0.0, 0.05, 0.5, 1.5, 3.5]),
)


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e6, 1e6), st.floats(0, 3), _NETWORK, _NETWORK)
def test_two_replicas_never_hold_open_fences_at_the_same_moment(
    skew: float,
    b_starts_at: float,
    network_a: tuple[list[tuple[float, float]], float, float],
    network_b: tuple[list[tuple[float, float]], float, float],
) -> None:
    """Each replica tries every retry period, as its renewal thread does, over a network whose
    outages and delays the test draws, with node clocks any distance apart: the times when each may
    write never overlap, even though the follower's own flags are shorter than the holder's (its
    Lease record's duration is what counts). Rounds of the two replicas run one after the other."""
    world = {"t": 0.0}
    leases = SimulatedLeases(world)
    offsets = {"a": 0.0, "b": skew}
    networks = {"a": network_a, "b": network_b}
    flags = {"a": (15.0, 10.0, 2.0), "b": (6.0, 4.0, 1.0)}
    replicas = {
        who: replica(leases, who, lambda who=who: world["t"] + offsets[who], flags[who])  # type: ignore[misc]
        for who in "ab"
    }
    open_fences: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    next_round = {"a": 0.0, "b": b_starts_at}
    while min(next_round.values()) < 90:
        who = min(next_round, key=lambda name: next_round[name])
        world["t"] = max(world["t"], next_round[who])
        outages, leases.there, leases.back = networks[who]
        leases.reachable = not any(start <= world["t"] < start + length for start, length in outages)
        elector = replicas[who]
        started = elector.clock()
        elector.renew_round(started)
        renewed_at = elector._renewed_at
        if renewed_at == started and elector.is_leader:
            begin = renewed_at - offsets[who]  # back to the world's time
            open_fences[who].append((begin, begin + elector.renew_deadline))
        next_round[who] = started - offsets[who] + elector.retry_period
    for a_begin, a_end in open_fences["a"]:
        for b_begin, b_end in open_fences["b"]:
            assert a_end <= b_begin or b_end <= a_begin, open_fences


async def test_a_stopping_replica_releases_the_lease_only_after_its_last_write() -> None:
    leases = FakeLeases()
    leader = replica(leases, "a", durations=(3, 2, 0.2))
    stop, task = await leading(leader)
    write_started, write_may_end = threading.Event(), threading.Event()

    def slow_write() -> None:  # a pass's write, still on its way when SIGTERM comes
        with leader.writing():
            write_started.set()
            write_may_end.wait(5)

    writer = threading.Thread(target=slow_write)
    writer.start()
    write_started.wait(5)
    stop.set()
    await asyncio.sleep(0.5)
    assert not task.done()
    assert leases.holder() == "a", "not released while a write is in flight"
    with pytest.raises(Fenced), leader.writing():
        pass  # but no new write starts once the replica is stopping
    write_may_end.set()
    await asyncio.wait_for(task, 5)
    writer.join()
    assert leases.holder() == ""
