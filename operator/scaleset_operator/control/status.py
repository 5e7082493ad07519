"""The ScaleSet status: conditions with stable transition times, per-domain summaries, and the status write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import InstanceState


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: bool
    reason: str
    message: str


def merge_conditions(
    previous: Sequence[dict[str, Any]], updates: Sequence[ConditionUpdate], generation: int, now: str
) -> list[dict[str, Any]]:
    """New conditions, keeping lastTransitionTime where the status did not flip (as metav1 expects)."""
    old = {c.get("type"): c for c in previous}
    merged = []
    for update in updates:
        status = "True" if update.status else "False"
        before = old.get(update.type)
        since = before.get("lastTransitionTime") if before and before.get("status") == status else now
        merged.append(
            {
                "type": update.type,
                "status": status,
                "reason": update.reason,
                "message": update.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return merged


def upgrade_domain_summaries(
    instances: Sequence[InstanceState], upgrade_domain_count: int, update_revision: str, healthy: set[str]
) -> list[dict[str, Any]]:
    domains: list[dict[str, Any]] = []
    for index in range(upgrade_domain_count):
        members = [i for i in instances if upgrade_domain_of(i.ordinal, upgrade_domain_count) == index]
        if not members:
            continue
        revisions = {i.revision for i in members}
        domains.append(
            {
                "index": index,
                "instances": [i.name for i in members],
                "revision": revisions.pop() if len(revisions) == 1 else None,
                "updated": sum(1 for i in members if i.revision == update_revision),
                "healthy": sum(1 for i in members if i.name in healthy),
            }
        )
    return domains
