"""The audit reader of the high-availability tests, on audit lines written by hand: it must find a
write of a replica that overlaps another's term, or the tests built on it could never fail."""

from __future__ import annotations

import json

from tests.integration.audit_writes import replica_writes, terms, writes_outside_own_term


def line(
    agent: str, verb: str, resource: str, name: str, received: str, answered: str, code: int = 200
) -> str:
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "userAgent": agent,
            "verb": verb,
            "objectRef": {
                "apiGroup": "coordination.k8s.io" if resource == "leases" else "",
                "resource": resource,
                "namespace": "ops",
                "name": name,
            },
            "requestReceivedTimestamp": f"2025-01-01T00:00:{received}Z",
            "stageTimestamp": f"2025-01-01T00:00:{answered}Z",
            "responseStatus": {"code": code},
        }
    )


A, B = "scaleset-operator/a_1", "scaleset-operator/b_2"
A_KOPF = "scaleset-operator/a_1 kopf/1.45.2"


def test_a_handover_with_the_old_leaders_writes_all_answered_before_it_is_clean() -> None:
    lines = [
        line(A, "create", "leases", "lease", "00.000000", "00.010000", 201),
        line(A, "patch", "pods", "web-0", "01.000000", "01.020000"),
        line(A_KOPF, "patch", "scalesets", "web", "01.500000", "01.510000"),
        line(B, "update", "leases", "lease", "02.000000", "02.010000", 409),  # a failed try: no term
        line(A, "update", "leases", "lease", "03.000000", "03.010000"),  # the release
        line(B, "update", "leases", "lease", "03.100000", "03.110000"),
        line(B, "patch", "pods", "web-1", "03.200000", "03.210000"),
        line(A, "get", "pods", "web-1", "04.000000", "04.010000"),  # reads are no writes
    ]
    writes = replica_writes(lines, "ops", "lease")
    assert [(t.replica, t.start.second) for t in terms(writes)] == [("a_1", 0), ("b_2", 3)]
    assert writes_outside_own_term(writes) == []


def test_a_write_received_after_the_new_leaders_acquisition_is_found() -> None:
    lines = [
        line(A, "create", "leases", "lease", "00.000000", "00.010000", 201),
        line(B, "update", "leases", "lease", "05.000000", "05.010000"),
        line(A, "delete", "pods", "web-0", "05.500000", "05.510000", 409),  # refused, but sent
    ]
    ((write, term),) = writes_outside_own_term(replica_writes(lines, "ops", "lease"))
    assert (write.replica, write.verb, term and term.replica) == ("a_1", "delete", "b_2")


def test_a_write_still_being_answered_when_the_other_takes_over_is_found() -> None:
    lines = [
        line(A, "create", "leases", "lease", "00.000000", "00.010000", 201),
        line(A_KOPF, "patch", "scalesets", "web", "04.900000", "05.100000"),
        line(B, "update", "leases", "lease", "05.000000", "05.010000"),
    ]
    ((write, term),) = writes_outside_own_term(replica_writes(lines, "ops", "lease"))
    assert write.what == "core/scalesets ops/web" and term is not None and term.replica == "b_2"


def test_a_write_before_anyone_held_the_lease_is_found() -> None:
    lines = [
        line(B, "patch", "pods", "web-1", "00.000000", "00.010000"),
        line(A, "create", "leases", "lease", "01.000000", "01.010000", 201),
    ]
    ((write, term),) = writes_outside_own_term(replica_writes(lines, "ops", "lease"))
    assert write.replica == "b_2" and term is None
