"""Data disks: which claims a ScaleSet owns, whether an instance may mount one, how a claim's owner
references follow persistentVolumeClaimRetentionPolicy, and which claims a scale-down releases.

The retention policy follows StatefulSet's (KEP-1847, `stateful_set_utils.go`): a change of the policy
applies to the claims that exist, both ways. `whenDeleted: Delete` gives each claim an owner reference to
the ScaleSet, so that the garbage collector deletes it with the ScaleSet; `Retain` removes that
reference. A reference to an earlier ScaleSet of the same name (another uid) is left alone, for the
garbage collector; a claim another controller manages gets no reference of ours.

`whenScaled: Delete` is carried out by the operator itself rather than by an owner reference to the pod:
it deletes a claim once the instance is scaled away and its pod is gone, with the claim's uid and
resourceVersion as preconditions. So nothing it did not create and nothing changed since it looked is
deleted, the rule is the same on any cluster, and a claim never carries a reference to a pod that a
scale-up could bring back under the same name.

A ScaleSet owns a claim when the claim carries its uid: the `created-by` annotation it writes on every
claim it creates, or an owner reference (claims made before the annotation existed). Claims labelled
with the ScaleSet's name but created by an earlier ScaleSet of that name are mounted by the instance
they name and never deleted. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from scaleset_operator.api.models import API_VERSION, RetentionAction
from scaleset_operator.identity import (
    ANNOTATION_CREATED_BY,
    LABEL_ORDINAL,
    LABEL_SCALESET,
    LABEL_SLOT,
    ordinal_of,
    slot_of,
)


@dataclass(frozen=True)
class Claim:
    """What the planner reads of a PersistentVolumeClaim."""

    name: str
    uid: str
    resource_version: str
    scaleset: str | None
    ordinal: int | None
    slot: str
    created_by: str | None
    owner_references: tuple[Mapping[str, Any], ...]
    terminating: bool

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Claim:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        return cls(
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            resource_version=str(metadata.get("resourceVersion") or ""),
            scaleset=labels.get(LABEL_SCALESET),
            ordinal=ordinal_of(dict(obj)),
            slot=slot_of(dict(obj)),
            created_by=(metadata.get("annotations") or {}).get(ANNOTATION_CREATED_BY),
            owner_references=tuple(metadata.get("ownerReferences") or ()),
            terminating=bool(metadata.get("deletionTimestamp")),
        )

    def owned_by(self, uid: str) -> bool:
        """The ScaleSet of `uid` created this claim (its annotation, or an owner reference to it)."""
        return self.created_by == uid or any(ref.get("uid") == uid for ref in self.owner_references)


@dataclass(frozen=True)
class ScaleSetRef:
    """The ScaleSet a pass works for, as its claims' owner references name it."""

    name: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        # Owner but not controller: the garbage collector deletes the claim with the ScaleSet, and a claim
        # that another controller manages can carry the reference beside that one's.
        return {
            "apiVersion": API_VERSION,
            "kind": "ScaleSet",
            "name": self.name,
            "uid": self.uid,
            "controller": False,
            "blockOwnerDeletion": True,
        }

    def is_named_by(self, ref: Mapping[str, Any]) -> bool:
        """`ref` points at a ScaleSet of this name (this one, or an earlier one of the same name)."""
        return (
            ref.get("kind") == "ScaleSet"
            and str(ref.get("apiVersion") or "").split("/")[0] == API_VERSION.split("/")[0]
            and ref.get("name") == self.name
        )


# --------------------------------------------------------------------------- mounting


class Fit(StrEnum):
    """Whether an instance may mount the claim of its name."""

    MISSING = "Missing"  # no claim of that name: create it
    MOUNT = "Mount"  # the instance's claim (created by this ScaleSet or kept from an earlier one)
    WAIT = "Wait"  # the instance's claim, being deleted: the instance waits until it is gone
    FOREIGN = "Foreign"  # another object holds the name: reported, never mounted


def fit(claim: Claim | None, scaleset: str, ordinal: int, slot: str | None) -> Fit:
    """An instance mounts a claim only when the claim's labels name it: its ScaleSet, ordinal and slot.

    The name alone does not say whose a claim is (two ScaleSets can meet on one), and a claim being
    deleted would leave the new pod unable to start (StatefulSet waits as well: "pvc is being deleted").
    """
    if claim is None:
        return Fit.MISSING
    if claim.scaleset != scaleset or claim.ordinal != ordinal or claim.slot != (slot or "blue"):
        return Fit.FOREIGN
    return Fit.WAIT if claim.terminating else Fit.MOUNT


def foreign_claim_message(claim: Claim, scaleset: str, ordinal: int, slot: str | None) -> str:
    """One sentence naming the claim that holds an instance's claim name, and how to free it."""
    wanted = [f"{LABEL_SCALESET}={scaleset}", f"{LABEL_ORDINAL}={ordinal}"]
    if slot not in (None, "blue"):
        wanted.append(f"{LABEL_SLOT}={slot}")
    return (
        f"PersistentVolumeClaim {claim.name} exists and is not labelled for instance {ordinal} of this "
        f"ScaleSet ({', '.join(wanted)}), so that instance is not created until the claim is removed "
        "or labelled so."
    )


# --------------------------------------------------------------------------- whenDeleted


@dataclass(frozen=True)
class OwnerChange:
    """What a claim's metadata must become: its owner references, and the created-by mark if missing."""

    owner_references: tuple[Mapping[str, Any], ...]
    mark_created_by: bool


def owner_change(
    claim: Claim, scaleset: ScaleSetRef, when_deleted: RetentionAction | str
) -> OwnerChange | None:
    """How a claim's owner references follow whenDeleted; None when they already do, or the claim is not
    this ScaleSet's to change (another ScaleSet created it, or a stale reference to an earlier ScaleSet
    of the same name waits for the garbage collector)."""
    if not claim.owned_by(scaleset.uid):
        return None
    refs = claim.owner_references
    if any(scaleset.is_named_by(ref) and ref.get("uid") != scaleset.uid for ref in refs):
        return None
    others = tuple(ref for ref in refs if ref.get("uid") != scaleset.uid)
    ours = tuple(ref for ref in refs if ref.get("uid") == scaleset.uid)
    another_controller = any(ref.get("controller") is True for ref in others)
    if when_deleted == RetentionAction.DELETE and not another_controller:
        wanted = refs if ours else (*refs, scaleset.owner_reference())
    else:
        wanted = others
    mark = claim.created_by is None
    if wanted == refs and not mark:
        return None
    return OwnerChange(tuple(wanted), mark)


# --------------------------------------------------------------------------- whenScaled


def releasable(
    claim: Claim,
    scaleset: ScaleSetRef,
    when_scaled: RetentionAction | str,
    slot: str,
    needed: Collection[int],
    live: Collection[int],
) -> bool:
    """whenScaled: Delete releases a claim of `slot` that this ScaleSet created, once no instance needs it
    (its ordinal is not in `needed`) and no pod of that slot and ordinal is left (`live`, terminating
    ones included). A claim without an ordinal label is never released."""
    return (
        when_scaled == RetentionAction.DELETE
        and claim.owned_by(scaleset.uid)
        and claim.scaleset == scaleset.name
        and claim.slot == slot
        and claim.ordinal is not None
        and claim.ordinal not in needed
        and claim.ordinal not in live
        and not claim.terminating
    )


def claims_to_release(
    claims: Sequence[Claim],
    scaleset: ScaleSetRef,
    when_scaled: RetentionAction | str,
    slot: str,
    needed: Collection[int],
    live: Collection[int],
) -> list[Claim]:
    """The claims `releasable` picks, highest ordinal first (the order instances are scaled in)."""
    chosen = [c for c in claims if releasable(c, scaleset, when_scaled, slot, needed, live)]
    return sorted(chosen, key=lambda c: (-(c.ordinal or 0), c.name))
