"""What to do to each member of an upgrade batch, as values: surge first, update in place, or reimage.

The decision is pure; `InstanceControl.carry_out_batch` executes the actions (creates the surge pod,
patches the image, evicts for a reimage), as StatefulSet's sync decides and stateful_pod_control acts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaleset_operator.api.models import UpdateMethod
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import HealthGate, InstanceState
from scaleset_operator.planning.package import restart_due, restarts_in_place
from scaleset_operator.planning.revisions import UpdateKind, classify_update


@dataclass(frozen=True)
class Surge:
    """maxSurge: create the instance's surge pod on `revision` before the old one goes."""

    ordinal: int
    revision: str


@dataclass(frozen=True)
class UpdateInPlace:
    """Patch the live pod to `revision`; `reboots` when a container restarts for it (an image changes)."""

    ordinal: int
    revision: str
    reboots: bool


@dataclass(frozen=True)
class Reimage:
    """Take the pod away so that it is created again on `revision` (same name, same data disks)."""

    ordinal: int
    revision: str


BatchAction = Surge | UpdateInPlace | Reimage


@dataclass(frozen=True)
class Member:
    """A batch member's pod as the pass read it: its revision label, whether it is going, and the
    template of the revision it runs (None when that revision is unknown)."""

    ordinal: int
    revision: str | None
    terminating: bool
    template: Mapping[str, Any] | None


@dataclass(frozen=True)
class BatchPlan:
    """The actions for a batch, in order, and the ordinals whose surge pods are still wanted."""

    actions: tuple[BatchAction, ...]
    surges_wanted: frozenset[int]


def update_kind(
    old_template: Mapping[str, Any] | None,
    new_template: Mapping[str, Any],
    method: UpdateMethod,
    os_container: str,
) -> UpdateKind:
    """In place when only what a live pod may change differs (and the policy allows it), else reimage."""
    if old_template is None or method != UpdateMethod.IN_PLACE_IF_POSSIBLE:
        return UpdateKind.REIMAGE
    kind = classify_update(old_template, new_template)
    if kind == UpdateKind.IN_PLACE and restart_due(old_template, new_template, os_container):
        # A guest patch that needs a restart and brings no image: Kubernetes restarts a container in
        # place only for a new image, so the pod is created again (as a restart is).
        return UpdateKind.REIMAGE
    return kind


def reboots(old_template: Mapping[str, Any] | None, new_template: Mapping[str, Any]) -> bool:
    """An in-place update that restarts a container; a hotpatch (annotations only) is no reboot."""
    return old_template is None or restarts_in_place(old_template, new_template)


def plan_batch(
    members: Iterable[Member],
    *,
    replicas: int,
    update_revision: str,
    target_template: Mapping[str, Any],
    method: UpdateMethod,
    os_container: str,
    max_surge: bool,
    surges: Mapping[int, InstanceState],
    gate: HealthGate,
    now: datetime,
) -> BatchPlan:
    """Each member not on `update_revision` yet is updated in place or reimaged; with maxSurge its
    surge pod comes first (a `Surge` when it is missing) and the member moves only once that pod is
    healthy. A member that is gone, going, or above `replicas` is left alone."""
    actions: list[BatchAction] = []
    wanted: set[int] = set()
    for member in members:
        if member.terminating or member.ordinal >= replicas:
            continue
        if max_surge:
            wanted.add(member.ordinal)  # kept until the updated instance is healthy
        if member.revision == update_revision:
            continue
        if max_surge:
            surge = surges.get(member.ordinal)
            if surge is None:
                actions.append(Surge(member.ordinal, update_revision))
                continue
            if not gate.is_healthy(surge, now):
                continue
        kind = update_kind(member.template, target_template, method, os_container)
        if kind == UpdateKind.REIMAGE:
            actions.append(Reimage(member.ordinal, update_revision))
        else:
            restarts = kind == UpdateKind.IN_PLACE and reboots(member.template, target_template)
            actions.append(UpdateInPlace(member.ordinal, update_revision, restarts))
    return BatchPlan(tuple(actions), frozenset(wanted))


def revision_for_new_instance(
    ordinal: int,
    *,
    current_revision: str,
    update_revision: str,
    batch: frozenset[int],
    batch_domain: int | None,
    domain_count: int,
    automatic_locked: bool,
    restarted_on: str | None = None,
) -> str:
    """A missing instance comes back on the revision the rollout has reached for it.

    Recreating it on the new revision everywhere would move instances the rollout has not reached
    (and, in Manual mode, domains the user has not walked); on the old one everywhere would undo work.
    `restarted_on`: the revision a Restart repair of this instance recorded (it comes back as it ran).
    The new revision goes to the batch's members, the domains below the batch's, and every instance
    of an Automatic upgrade under way; the others keep the current revision.
    """
    if restarted_on is not None:
        return restarted_on
    if current_revision == update_revision:
        return update_revision
    domain = upgrade_domain_of(ordinal, domain_count)
    if ordinal in batch or (batch_domain is not None and domain < batch_domain) or automatic_locked:
        return update_revision
    return current_revision


def missing_ordinals(replicas: int, present: Collection[int]) -> tuple[int, ...]:
    """The ordinals below `replicas` with no pod, lowest first (StatefulSet's order of creation)."""
    return tuple(ordinal for ordinal in range(replicas) if ordinal not in present)


def leaving_ordinals(replicas: int, pods: Mapping[int, bool]) -> tuple[int, ...]:
    """Scale-in: the ordinals at or above `replicas` whose pods are not going yet (`pods` maps an
    ordinal to whether its pod is terminating), highest first, as StatefulSet removes them."""
    return tuple(o for o in sorted(pods, reverse=True) if o >= replicas and not pods[o])


@dataclass(frozen=True)
class RevertDrift:
    """Put back what a foreign edit changed on a managed pod: identity labels and container images."""

    ordinal: int
    labels: Mapping[str, str]
    images: tuple[tuple[str, str], ...]  # (container, image), in the template's order

    @property
    def what(self) -> str:
        """The labels and containers reverted, for the Event."""
        return ", ".join(sorted([*self.labels, *(name for name, _ in self.images)]))


def drift_of(
    ordinal: int,
    labels: Mapping[str, str],
    images: Mapping[str, str],
    template: Mapping[str, Any] | None,
    *,
    identity: Mapping[str, str],
    domain_label: tuple[str, str] | None,
) -> RevertDrift | None:
    """What to revert on one pod: the `identity` labels (and `domain_label` when given: domains follow
    upgradeDomainCount only between upgrades) that differ, and the images of its revision's `template`
    that a container it has runs differently. None when nothing drifted."""
    wanted = dict(identity)
    if domain_label is not None:
        wanted[domain_label[0]] = domain_label[1]
    changed = {key: value for key, value in wanted.items() if labels.get(key) != value}
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    want_images = {c["name"]: c["image"] for c in containers}
    wrong = tuple((name, image) for name, image in want_images.items() if images.get(name, image) != image)
    if not changed and not wrong:
        return None
    return RevertDrift(ordinal, changed, wrong)
