"""Manual mode's walk: the upgrade domains of one update revision that the user has released.

The seed's rule for a manual upgrade is that nothing moves until the user walks the next upgrade
domain *of this update*: a walk belongs to one update revision (`status.upgrade.walk.revision`), and
a new revision starts unwalked, at upgrade domain 0, whatever was walked before.

Two ways record a walk, both consumed into status once:

- the annotation `fleet.scaleset.dev/walk=UD` (or `UD@REVISION`, so that a walk asked for one revision
  never lands on the next one); `scaleset walk NAME UD` sets it and waits for the answer in
  `status.upgrade.lastAction`;
- a *change* of `spec.walkUpgradeDomain`: it walks the update revision of the moment it is seen. The
  value last read is kept in the record, so a value merely left in Git (or in any manifest applied
  again) never walks a later revision.

Everything here is pure: the record, the annotation's text and the clock are arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from scaleset_operator.api.models import UpgradeMode
from scaleset_operator.identity import ANNOTATION_WALK
from scaleset_operator.planning.batches import Step, StepReason, Wait
from scaleset_operator.planning.domains import upgrade_domain_of

_REQUEST: Final = re.compile(r"^\s*(?P<domain>\d+)\s*(@\s*(?P<revision>\S+)\s*)?$")


class WalkSource(StrEnum):
    ANNOTATION = "Annotation"
    SPEC = "Spec"


@dataclass(frozen=True)
class Walk:
    """status.upgrade.walk: domains 0..upgrade_domain of `revision` may be updated."""

    revision: str
    upgrade_domain: int | None
    source: WalkSource
    at: datetime | None = None
    spec_value: int | None = None  # spec.walkUpgradeDomain as last read

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Walk | None:
        if not status or not status.get("revision"):
            return None
        at = status.get("at")
        return cls(
            revision=str(status["revision"]),
            upgrade_domain=_int_or_none(status.get("upgradeDomain")),
            source=WalkSource(status.get("source") or WalkSource.ANNOTATION),
            at=datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None,
            spec_value=_int_or_none(status.get("specWalkUpgradeDomain")),
        )

    def to_status(self) -> dict[str, Any]:
        """Every key present, null where nothing is, so that a merge patch clears what went."""
        return {
            "revision": self.revision,
            "upgradeDomain": self.upgrade_domain,
            "source": str(self.source),
            "at": self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if self.at else None,
            "specWalkUpgradeDomain": self.spec_value,
        }


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def effective_walk(walk: Walk | None, update_revision: str) -> int | None:
    """The walkUpgradeDomain the planner gets: the recorded walk, for its own revision only."""
    if walk is None or walk.revision != update_revision:
        return None
    return walk.upgrade_domain


def observe_spec(
    walk: Walk | None, spec_value: int | None, update_revision: str, now: datetime
) -> Walk | None:
    """The record once spec.walkUpgradeDomain has been read; None when nothing changed.

    Only a change of the value walks, and it walks the update revision of this moment. A ScaleSet
    whose record has never seen the field takes its value as a change: a rollout that was running
    under the field keeps walking the revision it was walking.
    """
    seen = walk.spec_value if walk is not None else None
    if spec_value == seen:
        return None
    return Walk(update_revision, spec_value, WalkSource.SPEC, now, spec_value)


# --------------------------------------------------------------------------- the annotation


class WalkRefusal(StrEnum):
    NOT_MANUAL = "NotManualMode"
    INVALID = "InvalidWalk"
    NO_UPGRADE = "WalkNotAllowed"
    OTHER_REVISION = "WalkRevisionMismatch"
    ACTION_IN_PROGRESS = "ActionInProgress"


@dataclass(frozen=True)
class WalkAccepted:
    walk: Walk
    message: str


@dataclass(frozen=True)
class WalkRefused:
    reason: WalkRefusal
    message: str


WalkDecision = WalkAccepted | WalkRefused


def decide_walk(
    request: str,
    *,
    mode: UpgradeMode | str,
    upgrade_domain_count: int,
    update_revision: str,
    current_revision: str,
    action: str | None,
    walk: Walk | None,
    now: datetime,
    annotation: str = ANNOTATION_WALK,
) -> WalkDecision:
    """The answer to `fleet.scaleset.dev/walk=<request>`: the new record, or why it is refused.

    `action` is the rollback or restart running, if any (a walk does not hold them, so it means
    nothing while they run). A walk of a revision that is not the update revision is refused, so an
    old request never releases a newer update.
    """
    if UpgradeMode(mode) != UpgradeMode.MANUAL:
        return WalkRefused(
            WalkRefusal.NOT_MANUAL,
            f"The UpgradePolicy is in {mode} mode: only Manual mode waits for a walk.",
        )
    parsed = _REQUEST.match(request or "")
    if parsed is None:
        return WalkRefused(
            WalkRefusal.INVALID,
            f"{annotation}: {request!r} is not an upgrade domain; write UD or UD@REVISION, e.g. 1 or 1@{update_revision}.",
        )
    domain = int(parsed["domain"])
    if domain >= upgrade_domain_count:
        return WalkRefused(
            WalkRefusal.INVALID,
            f"{annotation}: upgrade domain {domain} does not exist; spec.upgradeDomainCount is "
            f"{upgrade_domain_count}, so domains are 0 to {upgrade_domain_count - 1}.",
        )
    if action is not None:
        return WalkRefused(
            WalkRefusal.ACTION_IN_PROGRESS,
            f"A {action.lower()} is running and a walk does not hold it; walk the next update once it ends.",
        )
    if update_revision == current_revision:
        return WalkRefused(
            WalkRefusal.NO_UPGRADE,
            f"No upgrade is in progress: every instance is to run {current_revision}. A walk belongs to one "
            "update revision, and a new update starts unwalked: walk it once spec.template changes.",
        )
    named = parsed["revision"]
    if named is not None and named != update_revision:
        return WalkRefused(
            WalkRefusal.OTHER_REVISION,
            f"The walk names revision {named}, but the upgrade in progress is to {update_revision}: "
            "a walk never releases another update than its own; walk again.",
        )
    spec_value = walk.spec_value if walk is not None else None
    record = Walk(update_revision, domain, WalkSource.ANNOTATION, now, spec_value)
    domains = "upgrade domain 0" if domain == 0 else f"upgrade domains 0..{domain}"
    return WalkAccepted(record, f"{domains.capitalize()} of {update_revision} may be updated.")


# --------------------------------------------------------------------------- what the user is told


def explain_wait(
    step: Step,
    walk: Walk | None,
    update_revision: str,
    upgrade_domain_count: int,
    outdated_ordinals: list[int],
    scaleset: str,
) -> Step:
    """The planner's WaitingForWalk, said in terms of the walk of this update: which domain is next,
    the command that releases it, and a walk recorded for an earlier revision that no longer counts."""
    if not isinstance(step, Wait) or step.reason != StepReason.WAITING_FOR_WALK or not outdated_ordinals:
        return step
    walked = effective_walk(walk, update_revision)
    next_domain = min(upgrade_domain_of(o, upgrade_domain_count) for o in outdated_ordinals)
    if walked is None:
        done = f"no upgrade domain of {update_revision} is walked yet"
    elif walked == 0:
        done = f"upgrade domain 0 of {update_revision} is walked"
    else:
        done = f"upgrade domains 0..{walked} of {update_revision} are walked"
    message = (
        f"Manual mode: {done}; upgrade domain {next_domain} waits for a walk "
        f"(scaleset walk {scaleset} {next_domain}, or kubectl annotate scaleset {scaleset} "
        f"{ANNOTATION_WALK}={next_domain}@{update_revision})."
    )
    if walk is not None and walk.revision != update_revision and walk.upgrade_domain is not None:
        message += f" The walk to upgrade domain {walk.upgrade_domain} was for {walk.revision}: a new update starts unwalked."
    return replace(step, message=message)
