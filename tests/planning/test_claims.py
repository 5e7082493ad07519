"""Data disks: whose a claim is, when an instance mounts it, its owner references under whenDeleted
(KEP-1847, both ways), and which claims whenScaled: Delete releases."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.api.models import API_VERSION
from scaleset_operator.identity import (
    ANNOTATION_CREATED_BY,
    LABEL_ORDINAL,
    LABEL_SCALESET,
    LABEL_SLOT,
)
from scaleset_operator.planning.claims import (
    Claim,
    Fit,
    OwnerChange,
    ScaleSetRef,
    claims_to_release,
    fit,
    foreign_claim_message,
    owner_change,
    releasable,
)

WEB = ScaleSetRef("web", "uid-web")
EARLIER_WEB = ScaleSetRef("web", "uid-earlier-web")
OURS = WEB.owner_reference()
EARLIER = EARLIER_WEB.owner_reference()
OTHER_CONTROLLER = {"apiVersion": "apps/v1", "kind": "Foo", "name": "f", "uid": "uid-foo", "controller": True}
USER_REF = {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": "uid-cm"}


def claim(
    name: str = "data-web-0",
    *,
    scaleset: str | None = "web",
    ordinal: int | str | None = 0,
    slot: str | None = None,
    created_by: str | None = "uid-web",
    refs: tuple[dict[str, Any], ...] = (),
    terminating: bool = False,
) -> Claim:
    labels: dict[str, str] = {}
    if scaleset is not None:
        labels[LABEL_SCALESET] = scaleset
    if ordinal is not None:
        labels[LABEL_ORDINAL] = str(ordinal)
    if slot is not None:
        labels[LABEL_SLOT] = slot
    metadata: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "7",
        "labels": labels,
        "annotations": {ANNOTATION_CREATED_BY: created_by} if created_by else {},
        "ownerReferences": list(refs),
    }
    if terminating:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return Claim.of({"metadata": metadata})


# --------------------------------------------------------------------------- ownership


def test_a_claim_is_the_scalesets_by_its_annotation_or_an_owner_reference_carrying_its_uid() -> None:
    assert claim().owned_by(WEB.uid)
    assert claim(created_by=None, refs=(OURS,)).owned_by(WEB.uid)  # made before the annotation existed
    assert not claim(created_by=EARLIER_WEB.uid).owned_by(WEB.uid)  # kept from an earlier ScaleSet
    assert not claim(created_by=None).owned_by(WEB.uid)  # labels and name alone say nothing


# --------------------------------------------------------------------------- whenDeleted, both ways

# KEP-1847, "Mutating PersistentVolumeClaimPolicy": "When mutating any delete policy to retain, the PVC
# ownerRefs to the StatefulSet are removed" and "When mutating from the Retain policy to a deletion
# policy, the StatefulSet PVCs are updated with an ownerRef to the StatefulSet".
WHEN_DELETED = [
    # (refs on the claim, whenDeleted, refs it must end with)
    ((), "Delete", (OURS,)),
    ((OURS,), "Delete", None),
    ((OURS,), "Retain", ()),
    ((), "Retain", None),
    ((USER_REF,), "Delete", (USER_REF, OURS)),
    ((USER_REF, OURS), "Retain", (USER_REF,)),
    # stateful_set_utils.go hasUnexpectedController: a claim another controller manages gets no
    # reference of ours, and one we added is scrubbed.
    ((OTHER_CONTROLLER,), "Delete", None),
    ((OTHER_CONTROLLER, OURS), "Delete", (OTHER_CONTROLLER,)),
    ((OTHER_CONTROLLER, OURS), "Retain", (OTHER_CONTROLLER,)),
]


@pytest.mark.parametrize(("refs", "when_deleted", "wanted"), WHEN_DELETED)
def test_owner_references_follow_when_deleted(
    refs: tuple[dict[str, Any], ...], when_deleted: str, wanted: tuple[dict[str, Any], ...] | None
) -> None:
    change = owner_change(claim(refs=refs), WEB, when_deleted)
    assert change == (None if wanted is None else OwnerChange(wanted, mark_created_by=False))


def test_a_stale_reference_to_an_earlier_scaleset_of_the_name_is_left_for_the_garbage_collector() -> None:
    # stateful_set_utils.go isClaimOwnerUpToDate: "The claim is being managed by previous, presumably
    # deleted, version of the controller. It should not be touched."
    for policy in ("Delete", "Retain"):
        assert owner_change(claim(refs=(EARLIER, OURS)), WEB, policy) is None


def test_claims_the_scaleset_did_not_create_are_never_given_its_reference() -> None:
    for created_by in (EARLIER_WEB.uid, None):
        assert owner_change(claim(created_by=created_by), WEB, "Delete") is None


def test_a_claim_made_before_the_annotation_is_marked_when_its_references_are_set() -> None:
    assert owner_change(claim(created_by=None, refs=(OURS,)), WEB, "Delete") == OwnerChange((OURS,), True)
    assert owner_change(claim(created_by=None, refs=(OURS,)), WEB, "Retain") == OwnerChange((), True)


def test_the_reference_names_the_scaleset_as_owner_not_controller() -> None:
    assert OURS == {
        "apiVersion": API_VERSION,
        "kind": "ScaleSet",
        "name": "web",
        "uid": "uid-web",
        "controller": False,
        "blockOwnerDeletion": True,
    }


REFS = st.lists(st.sampled_from([OURS, USER_REF, OTHER_CONTROLLER]), unique_by=lambda r: r["uid"]).map(tuple)


@given(refs=REFS, when_deleted=st.sampled_from(["Delete", "Retain"]))
def test_owner_change_is_idempotent_and_keeps_every_reference_not_ours(
    refs: tuple[dict[str, Any], ...], when_deleted: str
) -> None:
    before = claim(refs=refs)
    change = owner_change(before, WEB, when_deleted)
    after_refs = before.owner_references if change is None else change.owner_references
    others = [r for r in refs if r["uid"] != WEB.uid]
    assert [r for r in after_refs if r["uid"] != WEB.uid] == others
    ours = any(r["uid"] == WEB.uid for r in after_refs)
    assert ours == (when_deleted == "Delete" and OTHER_CONTROLLER not in refs)
    assert owner_change(claim(refs=tuple(dict(r) for r in after_refs)), WEB, when_deleted) is None


# --------------------------------------------------------------------------- mounting


@pytest.mark.parametrize(
    ("found", "slot", "verdict"),
    [
        (None, None, Fit.MISSING),
        (claim(), None, Fit.MOUNT),
        (claim(created_by=EARLIER_WEB.uid), None, Fit.MOUNT),  # kept from an earlier ScaleSet: reused by name
        (claim(terminating=True), None, Fit.WAIT),  # KEP-1847: skip "until PVC deletion finishes"
        (claim(scaleset="web-x"), None, Fit.FOREIGN),
        (claim(scaleset=None, ordinal=None, created_by=None), None, Fit.FOREIGN),  # a user's claim
        (claim(ordinal=1), None, Fit.FOREIGN),
        (claim(slot="green"), None, Fit.FOREIGN),
        (claim("data-web-green-0", slot="green"), "green", Fit.MOUNT),
        (claim("data-web-green-0"), "green", Fit.FOREIGN),  # no slot label: a blue claim
        (claim(slot="blue"), "blue", Fit.MOUNT),
    ],
)
def test_an_instance_mounts_only_a_claim_labelled_for_it(
    found: Claim | None, slot: str | None, verdict: Fit
) -> None:
    assert fit(found, "web", 0, slot) == verdict


def test_the_foreign_claim_message_names_the_claim_and_the_labels_that_would_hand_it_over() -> None:
    message = foreign_claim_message(claim(scaleset="x"), "web", 0, "green")
    assert message.startswith("PersistentVolumeClaim data-web-0 exists")
    assert f"{LABEL_SCALESET}=web, {LABEL_ORDINAL}=0, {LABEL_SLOT}=green" in message
    assert message.endswith(".") and ". " not in message  # one sentence


# --------------------------------------------------------------------------- whenScaled


def test_when_scaled_delete_releases_the_claims_of_instances_scaled_away_once_their_pods_are_gone() -> None:
    # The API: "The Delete policy causes the associated PVCs for any excess pods above the replica
    # count to be deleted."
    claims = [claim(f"data-web-{o}", ordinal=o) for o in range(5)]
    released = claims_to_release(claims, WEB, "Delete", "blue", needed=range(2), live={2})
    assert [c.name for c in released] == ["data-web-4", "data-web-3"]
    assert claims_to_release(claims, WEB, "Retain", "blue", needed=range(2), live=set()) == []


@pytest.mark.parametrize(
    "kept",
    [
        claim("data-web-3", ordinal=3, created_by=EARLIER_WEB.uid),  # an earlier ScaleSet's
        claim("data-web-3", ordinal=3, created_by=None),  # nobody says whose
        claim("data-web-3", ordinal=None),  # no ordinal label
        claim("data-web-3", ordinal="three"),  # a mangled one
        claim("data-web-3", ordinal=3, terminating=True),  # being deleted already
        claim("data-web-3", ordinal=3, slot="green"),  # the other slot's
        claim("data-web-3", ordinal=3, scaleset="web-x"),  # labelled for another ScaleSet
    ],
)
def test_claims_a_scale_down_never_releases(kept: Claim) -> None:
    assert not releasable(kept, WEB, "Delete", "blue", needed=range(1), live=set())


@given(
    replicas=st.integers(0, 8),
    ordinals=st.lists(st.one_of(st.none(), st.integers(0, 10)), max_size=10),
    live=st.sets(st.integers(0, 10)),
    creators=st.lists(st.sampled_from([WEB.uid, EARLIER_WEB.uid, None]), min_size=10, max_size=10),
)
def test_a_released_claim_is_always_ours_scaled_away_and_unused(
    replicas: int, ordinals: list[int | None], live: set[int], creators: list[str | None]
) -> None:
    claims = [claim(f"data-web-{i}", ordinal=o, created_by=creators[i]) for i, o in enumerate(ordinals)]
    for released in claims_to_release(claims, WEB, "Delete", "blue", range(replicas), live):
        assert released.created_by == WEB.uid
        assert released.ordinal is not None and released.ordinal >= replicas
        assert released.ordinal not in live
