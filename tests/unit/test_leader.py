"""Leader election rounds against an in-memory Lease, with clocks the test moves."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from scaleset_operator.control.kube import ApiError
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

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        self._check()
        found = self.stored.get(path)
        return copy.deepcopy(found) if found else None

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        full = f"{path}/{body['metadata']['name']}"
        if full in self.stored:
            raise ApiError(409, "AlreadyExists", "exists")
        return self._store(full, body)

    def update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
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


def replica(leases: FakeLeases, identity: str, clock: Clock) -> Leadership:
    return Leadership(
        leases,  # type: ignore[arg-type]
        "ops",
        identity=identity,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock,
    )


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
    leases.get_or_none = lambda path: copy.deepcopy(stale)  # type: ignore[method-assign]
    assert not a.try_acquire_or_renew()
    assert leases.holder() == "b"


async def test_a_leader_that_cannot_renew_stands_down_within_the_renew_deadline() -> None:
    leases = FakeLeases()
    leader = Leadership(
        leases,  # type: ignore[arg-type]
        "ops",
        identity="a",
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.2,
    )
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
