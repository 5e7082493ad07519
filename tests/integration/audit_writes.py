"""Which operator replica wrote what and when, from an API server's audit log, and the writes that came
from a replica while another held the Lease.

Each replica names itself in its user agent (`scaleset-operator/<identity>`, kopf's requests with
`kopf/<version>` after it). A replica's term as leader starts with its first successful write of the
Lease (its acquisition; a follower writes the Lease only to take it) and lasts until another
replica's first successful write of it. Every other write (create, update, patch, delete) of a
replica, from the moment the API server received it to the moment it answered, must fall inside a term
of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
USER_AGENT_PREFIX = "scaleset-operator/"


@dataclass(frozen=True)
class Write:
    """One write request of a replica, as the API server's audit log recorded it."""

    replica: str
    verb: str
    what: str  # group/resource[/subresource] namespace/name
    received: datetime
    answered: datetime
    code: int
    lease: bool


@dataclass(frozen=True)
class Term:
    replica: str
    start: datetime
    end: datetime | None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def replica_writes(lines: Iterable[str], lease_namespace: str, lease_name: str) -> list[Write]:
    """Every write of an operator replica (by user agent) that the API server answered, oldest first."""
    writes = []
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        agent = str(event.get("userAgent") or "")
        if event.get("stage") != "ResponseComplete" or not agent.startswith(USER_AGENT_PREFIX):
            continue
        if event.get("verb") not in WRITE_VERBS:
            continue
        ref = event.get("objectRef") or {}
        resource = "/".join(
            part
            for part in (ref.get("apiGroup") or "core", ref.get("resource"), ref.get("subresource"))
            if part
        )
        writes.append(
            Write(
                replica=agent[len(USER_AGENT_PREFIX) :].split(" ", 1)[0],
                verb=str(event["verb"]),
                what=f"{resource} {ref.get('namespace') or ''}/{ref.get('name') or ''}",
                received=_time(event["requestReceivedTimestamp"]),
                answered=_time(event["stageTimestamp"]),
                code=int((event.get("responseStatus") or {}).get("code") or 0),
                lease=(
                    ref.get("resource") == "leases"
                    and ref.get("namespace") == lease_namespace
                    and ref.get("name") == lease_name
                ),
            )
        )
    return sorted(writes, key=lambda write: write.received)


def replica_writes_from_file(path: Path, lease_namespace: str, lease_name: str) -> list[Write]:
    with path.open() as lines:
        return replica_writes(lines, lease_namespace, lease_name)


def terms(writes: Iterable[Write]) -> list[Term]:
    """The replicas' terms as leader, from their successful writes of the Lease."""
    starts: list[tuple[str, datetime]] = []
    for write in writes:
        if write.lease and 200 <= write.code < 300 and (not starts or starts[-1][0] != write.replica):
            starts.append((write.replica, write.received))
    return [
        Term(replica, start, starts[i + 1][1] if i + 1 < len(starts) else None)
        for i, (replica, start) in enumerate(starts)
    ]


def writes_outside_own_term(writes: list[Write]) -> list[tuple[Write, Term | None]]:
    """Each write (the Lease's own excepted) that overlaps another replica's term, with that term; or
    that came before any term (None)."""
    found: list[tuple[Write, Term | None]] = []
    held = terms(writes)
    for write in writes:
        if write.lease:
            continue
        if not held or write.received < held[0].start:
            found.append((write, None))
            continue
        for term in held:
            if term.replica == write.replica:
                continue
            if write.answered > term.start and (term.end is None or write.received < term.end):
                found.append((write, term))
    return found
