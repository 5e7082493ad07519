"""Staged upgrades: when the second set is built, when it may take over, and what the swap leaves behind.

In Staged mode a template change never touches the instances that serve. A complete second set of
instances is created in the other slot (`blue` or `green`) on the new revision; once it is healthy as
a whole, every Service that selects the instances is moved to it, each in one update of its
selector's slot key. The set swapped away from is kept for `spec.staged.keepPreviousFor`, so that a
swap back is one more such update. Everything here is pure: the clock is an argument, and the state
is what status.staged records (`StagedRecord`), so an operator killed between any two writes picks
up where it stopped.

Like every mode, Staged mode honours `spec.paused` (nothing is created or swapped), and the staged
roll-out of an automatic package waits for its maintenance window like any other: the set is not
started, and the Services are not swapped, while the window of its scopes is closed. With
`staged.swap: Manual` the healthy set waits in phase ReadyToSwap until the user asks for the swap
(the seed's VIP swap is an action the user takes); a swap asked for is the user's, never gated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec

from scaleset_operator.api.models import (
    OnInstanceStartTimeout,
    Slot,
    SwapMode,
    UpgradeMode,
    UpgradePolicySpec,
)
from scaleset_operator.identity import ANNOTATION_SWAP, LABEL_SLOT
from scaleset_operator.planning.batches import Complete, Step, StepReason, Stop, Wait
from scaleset_operator.planning.instances import HealthGate, InstanceState, parse_time
from scaleset_operator.planning.maintenance import Closed, GateDecision

P = ParamSpec("P")


def other_slot(slot: Slot | str) -> Slot:
    return Slot.GREEN if Slot(slot) == Slot.BLUE else Slot.BLUE


def is_staged(policy: UpgradePolicySpec) -> bool:
    return policy.mode == UpgradeMode.STAGED


# --------------------------------------------------------------------------- the record in status.staged


@dataclass(frozen=True)
class StagedSet:
    """The set being brought up beside production."""

    slot: Slot
    revision: str
    started_at: datetime | None = None


@dataclass(frozen=True)
class Swap:
    """Every Service selecting the instances moves to `to_slot`; recorded before the first Service moves."""

    to_slot: Slot
    revision: str
    started_at: datetime | None = None
    back: bool = False


@dataclass(frozen=True)
class PreviousSet:
    """The set swapped away from, kept until `kept_until` so that a swap back is instant."""

    slot: Slot
    revision: str
    kept_until: datetime | None = None


@dataclass(frozen=True)
class StagedRecord:
    """What status.staged says: the production slot and its revision, and the set, swap and kept set."""

    production: Slot = Slot.BLUE
    production_revision: str | None = None
    staging: StagedSet | None = None
    swap: Swap | None = None
    previous: PreviousSet | None = None
    swapped_at: datetime | None = None
    swapped_back_revision: str | None = None
    services: tuple[str, ...] = ()

    @property
    def standby(self) -> Slot:
        """The slot that is not production: where a staged set is built and the previous set is kept."""
        return other_slot(self.production)

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None, production_revision: str | None) -> StagedRecord:
        """Read status.staged; a ScaleSet never staged has blue in production, on `production_revision`."""
        status = status or {}
        staging, swap, previous = status.get("staging"), status.get("swap"), status.get("previous")
        return cls(
            production=Slot(status.get("production") or Slot.BLUE),
            production_revision=status.get("productionRevision") or production_revision,
            staging=StagedSet(
                Slot(staging["slot"]), staging["revision"], parse_time(staging.get("startedAt"))
            )
            if staging
            else None,
            swap=Swap(
                Slot(swap["toSlot"]),
                swap["revision"],
                parse_time(swap.get("startedAt")),
                bool(swap.get("back")),
            )
            if swap
            else None,
            previous=PreviousSet(
                Slot(previous["slot"]), previous["revision"], parse_time(previous.get("keptUntil"))
            )
            if previous
            else None,
            swapped_at=parse_time(status.get("swappedAt")),
            swapped_back_revision=status.get("swappedBackRevision"),
            services=tuple(status.get("services") or ()),
        )

    def to_status(self) -> dict[str, Any]:
        """status.staged as written: every key present, null where nothing is, so a merge patch clears it."""
        return {
            "production": str(self.production),
            "productionRevision": self.production_revision,
            "staging": {
                "slot": str(self.staging.slot),
                "revision": self.staging.revision,
                "startedAt": _stamp(self.staging.started_at),
            }
            if self.staging
            else None,
            "swap": {
                "toSlot": str(self.swap.to_slot),
                "revision": self.swap.revision,
                "startedAt": _stamp(self.swap.started_at),
                "back": self.swap.back,
            }
            if self.swap
            else None,
            "previous": {
                "slot": str(self.previous.slot),
                "revision": self.previous.revision,
                "keptUntil": _stamp(self.previous.kept_until),
            }
            if self.previous
            else None,
            "swappedAt": _stamp(self.swapped_at),
            "swappedBackRevision": self.swapped_back_revision,
            "services": list(self.services),
        }


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class StagedPlan:
    """What one pass does in Staged mode, in this order: write `record` (when it changed), delete the
    standby instances `remove`, create the standby instances `create` (slot `record.standby`, revision
    `record.staging.revision`), then, with `swap`, move every selecting Service to `swap.to_slot` and
    write `finish_swap(...)`. `step` is for the conditions; `refusal` answers a swap back refused,
    `swap_refusal` a swap asked for that cannot be made now."""

    record: StagedRecord
    step: Step
    create: tuple[int, ...] = ()
    remove: tuple[int, ...] = ()
    swap: Swap | None = None
    refusal: str | None = None
    swap_refusal: str | None = None


def _answering_swap(plan: Callable[P, StagedPlan]) -> Callable[P, StagedPlan]:
    """A swap asked for is answered: with the swap, or with why there is none (the step's message)."""

    @functools.wraps(plan)
    def answered(*args: P.args, **kwargs: P.kwargs) -> StagedPlan:
        result = plan(*args, **kwargs)
        if kwargs.get("swap_requested") and result.swap is None and result.swap_refusal is None:
            why = getattr(result.step, "message", "") or "nothing is staged"
            result = replace(result, swap_refusal=f"No staged set is ready to swap to: {why}")
        return result

    return answered


@_answering_swap
def plan_staged(
    *,
    record: StagedRecord,
    policy: UpgradePolicySpec,
    template_revision: str,
    replicas: int,
    standby: Mapping[int, InstanceState],
    now: datetime,
    swap_back_requested: bool = False,
    quota_free: int | None = None,
    paused: bool = False,
    swap_requested: bool = False,
    gate: GateDecision | None = None,
) -> StagedPlan:
    """The next step of Staged mode (or, in another mode, of finishing what Staged mode left).

    `standby` holds the instances of the standby slot that exist, by ordinal. `quota_free` is how many
    more pods the namespace's ResourceQuotas let be created, None when none limits pods. `paused` is
    spec.paused; `swap_requested` the swap annotation; `gate` the window gate of the automatic work
    the staged revision carries (None for a template change the user made, which is never gated).
    """
    production = record.production_revision or template_revision
    if record.swap is not None:
        # The swap was recorded: it is finished whatever else changed, so that every Service ends up
        # selecting the same set.
        return StagedPlan(record, _swapping(record.swap), swap=record.swap)
    refusal = None
    if swap_back_requested:
        swap, refusal = _swap_back(record, replicas, standby, now)
        if swap is not None:
            return StagedPlan(replace(record, swap=swap), _swapping(swap), swap=swap)

    previous = record.previous
    if previous is not None and previous.kept_until is not None and previous.kept_until <= now:
        previous = None  # kept long enough: removed below, and only a new update undoes the swap
    held = record.swapped_back_revision
    if held is not None and template_revision != held:
        held = None  # the template moved on from the revision swapped away from
    wanted = template_revision != production and template_revision != held and is_staged(policy)

    if not wanted:
        kept = previous.revision if previous is not None else None
        remove = tuple(
            sorted(o for o, i in standby.items() if i.running and (i.revision != kept or o >= replicas))
        )
        settled = replace(
            record,
            production_revision=production,
            staging=None,
            previous=previous,
            swapped_back_revision=held,
        )
        step: Step = Complete(message=f"production ({record.production}) runs {production}")
        if held is not None and is_staged(policy):
            step = Stop(
                StepReason.SWAPPED_BACK,
                f"Swapped back from {held} to {production}; {held} is not staged again while spec.template "
                "asks for it: change spec.template to stage a new revision.",
            )
        return StagedPlan(settled, step, remove=remove, refusal=refusal)

    if paused:
        # Nothing is created, removed or swapped; what is staged stays as it is for the resume.
        held_record = replace(record, production_revision=production)
        message = (
            f"spec.paused holds the staged upgrade to {template_revision}: nothing is created or swapped; "
            f"production ({record.production}) serves."
        )
        return StagedPlan(held_record, Wait(StepReason.PAUSED, message), refusal=refusal)

    slot = record.standby
    starting = record.staging is None or record.staging.revision != template_revision
    if starting and isinstance(gate, Closed):
        # An automatic package is not started outside its window; production serves meanwhile.
        kept_record = replace(record, production_revision=production, previous=previous)
        waiting = Wait(StepReason.WAITING_FOR_MAINTENANCE_WINDOW, gate.message, gate.next_start)
        return StagedPlan(kept_record, waiting, refusal=refusal)
    capacity = _capacity_problem(policy, replicas, standby, template_revision, quota_free)
    if capacity is not None:
        # Nothing is created or removed: a set that cannot be completed is not started, and the kept
        # set stays for a swap back.
        kept_record = replace(record, production_revision=production, previous=previous)
        return StagedPlan(kept_record, Wait(StepReason.STAGED_CAPACITY, capacity), refusal=refusal)

    staging = record.staging
    if staging is None or staging.revision != template_revision or staging.slot != slot:
        staging = StagedSet(slot, template_revision, now)
    staged_record = replace(
        record, production_revision=production, staging=staging, previous=None, swapped_back_revision=None
    )
    remove = tuple(
        sorted(
            o for o, i in standby.items() if i.running and (i.revision != template_revision or o >= replicas)
        )
    )
    create = tuple(o for o in range(replicas) if o not in standby)
    if remove or create:
        on_it = sum(1 for o in range(replicas) if o in standby and o not in remove and standby[o].running)
        message = (
            f"Creating the staged set in slot {slot}: {on_it} of {replicas} instances on {template_revision}; "
            f"production ({record.production}) serves meanwhile."
        )
        return StagedPlan(staged_record, Wait(StepReason.STAGING, message), create, remove, refusal=refusal)

    members = [standby[o] for o in range(replicas)]
    health = _set_health(members, policy, template_revision, staging.started_at, now, replicas)
    if health is not None:
        return StagedPlan(staged_record, health, refusal=refusal)
    if not swap_requested and policy.staged.swap == SwapMode.MANUAL:
        message = (
            f"The staged set ({replicas} instances on {template_revision}, slot {slot}) is healthy and waits "
            f"for the swap: scaleset swap, or the annotation {ANNOTATION_SWAP}=true; production "
            f"({record.production}) serves meanwhile."
        )
        return StagedPlan(staged_record, Wait(StepReason.READY_TO_SWAP, message), refusal=refusal)
    if not swap_requested and isinstance(gate, Closed):
        waiting = Wait(StepReason.WAITING_FOR_MAINTENANCE_WINDOW, gate.message, gate.next_start)
        return StagedPlan(staged_record, waiting, refusal=refusal)
    swap = Swap(slot, template_revision, now)
    return StagedPlan(replace(staged_record, swap=swap), _swapping(swap), swap=swap, refusal=refusal)


def _swapping(swap: Swap) -> Wait:
    what = "Swapping back" if swap.back else "Swapping"
    return Wait(StepReason.SWAPPING, f"{what} every Service to slot {swap.to_slot} ({swap.revision}).")


def _swap_back(
    record: StagedRecord, replicas: int, standby: Mapping[int, InstanceState], now: datetime
) -> tuple[Swap | None, str | None]:
    """A swap back goes to the kept set at once, without waiting for health: it served until the swap."""
    previous = record.previous
    if previous is None or (previous.kept_until is not None and previous.kept_until <= now):
        return None, (
            "There is no previous set to swap back to: it is kept for spec.staged.keepPreviousFor after a "
            "swap, and a new staged upgrade replaces it; apply the former template to undo the change."
        )
    missing = [
        o
        for o in range(replicas)
        if not (o in standby and standby[o].running and standby[o].revision == previous.revision)
    ]
    if missing:
        return None, (
            f"The previous set in slot {previous.slot} lacks {len(missing)} of its {replicas} instances, "
            "so a swap back would leave the Services short; apply the former template instead."
        )
    return Swap(previous.slot, previous.revision, now, back=True), None


def _capacity_problem(
    policy: UpgradePolicySpec,
    replicas: int,
    standby: Mapping[int, InstanceState],
    revision: str,
    quota_free: int | None,
) -> str | None:
    """Why the staged set cannot be created whole now, or None."""
    limit = policy.staged.max_extra_instances
    if limit is not None and replicas > limit:
        return (
            f"spec.staged.maxExtraInstances of the UpgradePolicy is {limit}, below the {replicas} instances "
            "a staged upgrade runs beside production; raise it, or lower spec.replicas."
        )
    if quota_free is None:
        return None
    kept = sum(1 for o, i in standby.items() if o < replicas and i.running and i.revision == revision)
    freed = sum(1 for o, i in standby.items() if i.running and (i.revision != revision or o >= replicas))
    needed = replicas - kept
    if needed > quota_free + freed:
        return (
            f"The namespace's ResourceQuota allows {quota_free} more pods, and the staged set needs "
            f"{needed - freed}; it waits rather than create part of the set."
        )
    return None


def _set_health(
    members: list[InstanceState],
    policy: UpgradePolicySpec,
    revision: str,
    started_at: datetime | None,
    now: datetime,
    replicas: int,
) -> Step | None:
    """None when the staged set may take over: every instance healthy, or, once the unhealthy ones have
    had their instanceStartTimeout under onInstanceStartTimeout Proceed, no more of them than
    maxUnhealthyUpgradedInstancePercent allows. Otherwise the Wait or Stop that says why not."""
    gate = HealthGate.of(policy.health_check)
    unhealthy = [i for i in members if not (i.revision == revision and gate.is_healthy(i, now))]
    if not unhealthy:
        return None
    late = [i for i in unhealthy if gate.timed_out(i, revision, now, started_at)]
    limit = policy.rolling_upgrade.max_unhealthy_upgraded_instance_percent
    names = ", ".join(i.name for i in unhealthy[:5]) + (" ..." if len(unhealthy) > 5 else "")
    if late and policy.health_check.on_instance_start_timeout != OnInstanceStartTimeout.PROCEED:
        return Stop(
            StepReason.STAGED_SET_UNHEALTHY,
            f"{len(late)} staged instance(s) missed instanceStartTimeout ({names}); production is untouched: "
            "fix the template or apply another one.",
            tuple(i.ordinal for i in late),
        )
    if len(late) == len(unhealthy):
        if len(unhealthy) * 100 <= limit * replicas:
            return None
        return Stop(
            StepReason.STAGED_SET_UNHEALTHY,
            f"{len(unhealthy)} of {replicas} staged instances are unhealthy past instanceStartTimeout "
            f"({names}), more than maxUnhealthyUpgradedInstancePercent ({limit} %); production is untouched: "
            "fix the template or apply another one.",
            tuple(i.ordinal for i in unhealthy),
        )
    marks = [gate.start_deadline(i, revision, started_at) for i in unhealthy if i not in late]
    marks += [gate.healthy_at(i) for i in unhealthy]
    until = min((m for m in marks if m is not None and m > now), default=None)
    healthy = len(members) - len(unhealthy)
    return Wait(
        StepReason.WAITING_FOR_STAGED_SET,
        f"{healthy} of {replicas} staged instances healthy on {revision}; the swap waits for the set as a whole.",
        until,
    )


def finish_swap(
    record: StagedRecord, swap: Swap, services: Iterable[str], now: datetime, keep: timedelta
) -> StagedRecord:
    """The record once every Service selects `swap.to_slot`: it is production, the set swapped away from
    is kept for `keep`, and a swap back remembers the revision it left so it is not staged again."""
    previous = (
        PreviousSet(record.production, record.production_revision, now + keep)
        if record.production_revision is not None
        else None
    )
    return StagedRecord(
        production=swap.to_slot,
        production_revision=swap.revision,
        staging=None,
        swap=None,
        previous=previous,
        swapped_at=now,
        swapped_back_revision=record.production_revision if swap.back else None,
        services=tuple(sorted(services)),
    )


# --------------------------------------------------------------------------- Services and refusals


def selects_instances(
    selector: Mapping[str, str] | None, instance_labels: Iterable[Mapping[str, str]]
) -> bool:
    """A Service selects the ScaleSet's instances when its selector, the slot key aside, is not empty
    and matches the labels of one of them."""
    rest = {key: value for key, value in (selector or {}).items() if key != LABEL_SLOT}
    if not rest:
        return False
    return any(all(labels.get(key) == value for key, value in rest.items()) for labels in instance_labels)


def selector_patch(
    selector: Mapping[str, str] | None, slot: Slot, *, pin: bool = False, occupied: Collection[str] = ()
) -> dict[str, Any] | None:
    """The one update that makes a Service select `slot` (None when it already does): the slot key is
    added to, or changed in, its selector, so it never selects both sets nor neither.

    `pin` (outside a recorded swap) adds a missing key (a new Service, one made before the first
    staging) and replaces only a key naming a slot none of the instances is in (`occupied`: the slots
    that have instances), as one left by a deleted ScaleSet of the same name. A slot that has
    instances is never replaced, so an operator acting on a stale read cannot move a Service back
    from the slot a swap moved it to."""
    current = (selector or {}).get(LABEL_SLOT)
    if current == str(slot) or (pin and current is not None and current in occupied):
        return None
    return {"spec": {"selector": {LABEL_SLOT: str(slot)}}}


def _ports(template: Mapping[str, Any]) -> dict[str, list[tuple[str, int, str]]]:
    ports: dict[str, list[tuple[str, int, str]]] = {}
    for container in (template.get("spec") or {}).get("containers") or []:
        ports[container.get("name", "")] = sorted(
            (str(p.get("name") or ""), int(p.get("containerPort") or 0), str(p.get("protocol") or "TCP"))
            for p in container.get("ports") or []
        )
    return ports


def staged_refusal(production: Mapping[str, Any], template: Mapping[str, Any]) -> str | None:
    """The seed refuses to change the number or type of endpoints in a swap: in pod terms, the
    containers' ports. One sentence naming the field and the path that takes the change, or None."""
    old, new = _ports(production), _ports(template)
    for name in sorted(old.keys() | new.keys()):
        if old.get(name, []) != new.get(name, []):
            return (
                f"spec.template.spec.containers[{name}].ports cannot change in a staged upgrade, since a swap "
                "keeps the number and type of endpoints; apply it with UpgradePolicy spec.mode Rolling, "
                "which updates the instances in place."
            )
    return None
