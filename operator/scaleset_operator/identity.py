"""Names and labels that give each instance its identity: pod and PVC names, ordinals, label keys."""

from __future__ import annotations

import re
from typing import Any, Final

from scaleset_operator.api.models import GROUP
from scaleset_operator.api.rules import SURGE_WORD

LABEL_SCALESET: Final = f"{GROUP}/scaleset"
LABEL_ORDINAL: Final = f"{GROUP}/ordinal"
LABEL_UPGRADE_DOMAIN: Final = f"{GROUP}/upgrade-domain"
LABEL_REVISION: Final = f"{GROUP}/revision"
LABEL_SURGE: Final = f"{GROUP}/surge"
LABEL_SLOT: Final = f"{GROUP}/slot"

ANNOTATION_UPDATED_AT: Final = f"{GROUP}/updated-at"
ANNOTATION_ROLLBACK: Final = f"{GROUP}/rollback"
ANNOTATION_RESTART: Final = f"{GROUP}/restart"
# The node whose freeze the instance has agreed to (approved, or its notice ran out); see host_maintenance.
ANNOTATION_FROZEN_ON: Final = f"{GROUP}/frozen-on"
# `scaleset upgrade`: move the OS container to the newest published version now, or to the one named.
ANNOTATION_OS_UPGRADE: Final = f"{GROUP}/os-upgrade"
# On a ControllerRevision: the revision name of the user's spec.template it was made from (the
# revision's own template has automatic updates laid over it).
ANNOTATION_SPEC_REVISION: Final = f"{GROUP}/spec-revision"
ANNOTATION_SWAP_BACK: Final = f"{GROUP}/swap-back"
# On a PersistentVolumeClaim: the uid of the ScaleSet that created it. A ScaleSet deletes only the
# claims it created (this, or an owner reference carrying its uid); a claim kept from an earlier
# ScaleSet of the same name carries that one's uid and is mounted, never deleted.
ANNOTATION_CREATED_BY: Final = f"{GROUP}/created-by"
# Manual mode: `UD` or `UD@REVISION` releases upgrade domains 0..UD of the update revision (scaleset walk).
ANNOTATION_WALK: Final = f"{GROUP}/walk"
# Staged mode with staged.swap Manual: swap the Services to the staged set once it is healthy (scaleset swap).
ANNOTATION_SWAP: Final = f"{GROUP}/swap"

FIELD_MANAGER: Final = "scaleset-operator"

_INSTANCE_NAME = re.compile(r"^(?P<scaleset>.+)-(?P<ordinal>\d+)$")


def instance_name(scaleset: str, ordinal: int) -> str:
    return f"{scaleset}-{ordinal}"


def slot_base(scaleset: str, slot: str | None) -> str:
    """What the instances of a slot are named after: the blue slot (and a ScaleSet that has never been
    staged) keeps `<scaleset>-<ordinal>`; the green slot's instances are `<scaleset>-green-<ordinal>`,
    and their claims `<claim>-<scaleset>-green-<ordinal>`."""
    return scaleset if slot in (None, "blue") else f"{scaleset}-{slot}"


def slot_of(obj: dict[str, Any]) -> str:
    """The slot a pod or claim belongs to; one without the label is blue (made before any staging)."""
    return str((obj.get("metadata", {}).get("labels") or {}).get(LABEL_SLOT) or "blue")


def surge_instance_name(scaleset: str, ordinal: int) -> str:
    """A temporary extra instance that carries capacity while `<scaleset>-<ordinal>` is reimaged."""
    return f"{scaleset}-{SURGE_WORD}-{ordinal}"


def pod_name(scaleset: str, ordinal: int, slot: str | None = None, surge: bool = False) -> str:
    """The name (and hostname) of a pod the operator creates: an instance of `slot`, or its surge pod.

    With ScaleSet names that are DNS labels not ending in -green or -surge (the CRD refuses others),
    no two (ScaleSet, slot, surge, ordinal) get the same name: the ordinal is the last segment, and
    what stands before it ends in the ScaleSet's name, in -green or in -surge.
    """
    base = slot_base(scaleset, slot)
    return surge_instance_name(base, ordinal) if surge else instance_name(base, ordinal)


def claim_name(claim: str, scaleset: str, ordinal: int) -> str:
    """PVC name of one claim template for one instance, as StatefulSet names them."""
    return f"{claim}-{scaleset}-{ordinal}"


def instance_claim_name(claim: str, scaleset: str, ordinal: int, slot: str | None = None) -> str:
    """The PVC of claim template `claim` for instance `ordinal` of `slot`: `<claim>-<scaleset>-<ordinal>`,
    `<claim>-<scaleset>-green-<ordinal>` in the green slot.

    Two ScaleSets can still meet on a claim name (template `data` of `web-x` and template `data-web` of
    `x` both give `data-web-x-0`), so a claim is used only when its labels name the instance.
    """
    return claim_name(claim, slot_base(scaleset, slot), ordinal)


def ordinal_of(pod: dict[str, Any]) -> int | None:
    """The ordinal an instance pod carries in its label, or None when the label is missing or mangled."""
    raw = (pod.get("metadata", {}).get("labels") or {}).get(LABEL_ORDINAL)
    if raw is None or not str(raw).isdigit():
        return None
    return int(raw)


def selector_labels(scaleset: str) -> dict[str, str]:
    return {LABEL_SCALESET: scaleset}


def label_selector(scaleset: str) -> str:
    return f"{LABEL_SCALESET}={scaleset}"
