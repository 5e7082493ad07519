"""The names the operator generates: pods, surge pods, the green slot's pods, claims and revisions.

No two distinct (ScaleSet, slot, surge, ordinal) may give one pod name, whatever ScaleSets share a
namespace; within a ScaleSet no two (claim template, slot, ordinal) may give one claim name; and every
name must be valid: a pod's hostname is its name, a DNS label of at most 63 characters (RFC 1123), for
every ordinal that replicas <= 1000 allows.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from scaleset_operator.api.models import ScaleSet, Slot
from scaleset_operator.api.rules import (
    HOSTNAME_MAX_LENGTH,
    MAX_NAME_LENGTH,
    MAX_REPLICAS,
    STAGED_SLOT_WORD,
)
from scaleset_operator.control.manifests import instance_claims
from scaleset_operator.identity import instance_claim_name, pod_name
from scaleset_operator.planning.claims import Claim, Fit, fit
from scaleset_operator.planning.revisions import revision_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
TEMPLATE = {"spec": {"containers": [{"name": "os", "image": "app:v1"}]}}
SLOTS = [None, *(str(s) for s in Slot)]


@functools.cache
def admitted(name: str) -> bool:
    """The ScaleSet names admission lets through (the CRD's CEL rules say the same; tests/unit/test_crds.py)."""
    try:
        ScaleSet.model_validate({"metadata": {"name": name}, "spec": {"template": TEMPLATE}})
    except ValidationError:
        return False
    return True


# Names made of the words generated names use, with few ordinals, so that hypothesis meets the near
# misses: a ScaleSet named like another's green slot, surge pod or instance.
SEGMENTS = st.sampled_from(["web", "a", "green", "surge", "blue", "0", "1", "12", "x1"])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=4).map("-".join)
ADMITTED = NAMES.filter(admitted)
FEW_ORDINALS = st.sampled_from([0, 1, 12])
ORDINALS = st.integers(0, MAX_REPLICAS - 1)
PodId = tuple[str, str, bool, int]  # ScaleSet, slot (blue for one never staged), surge, ordinal
# Few enough pods (names of up to three of four words) that a list of 200 holds the near misses.
NEAR_NAMES = st.lists(st.sampled_from(["web", "green", "surge", "1"]), min_size=1, max_size=3).map("-".join)
PODS = st.tuples(
    NEAR_NAMES.filter(admitted),
    st.sampled_from([str(s) for s in Slot]),
    st.booleans(),
    st.sampled_from([0, 1]),
)


def _pod(scaleset: str, slot: str | None, surge: bool, ordinal: int) -> str:
    return pod_name(scaleset, ordinal, slot, surge)


def _collisions(pods: list[PodId]) -> dict[str, set[PodId]]:
    named: dict[str, set[PodId]] = {}
    for pod in pods:
        named.setdefault(_pod(*pod), set()).add(pod)
    return {name: ids for name, ids in named.items() if len(ids) > 1}


@settings(max_examples=300)
@given(pods=st.lists(PODS, min_size=2, max_size=200))
def test_no_two_pods_of_any_scalesets_share_a_name(pods: list[PodId]) -> None:
    assert _collisions(pods) == {}


def test_no_two_pods_share_a_name_among_every_short_name_made_of_the_generated_words() -> None:
    words = ["web", "green", "surge", "1", "0"]
    names = [*words, *(f"{a}-{b}" for a in words for b in words)]
    names += [f"{a}-{b}-{c}" for a in words for b in words for c in words]
    pods = [
        (name, str(slot), surge, ordinal)
        for name in names
        if admitted(name)
        for slot in Slot
        for surge in (False, True)
        for ordinal in (0, 1)
    ]
    assert len(pods) > 500
    assert _collisions(pods) == {}
    assert pod_name("web", 3) == pod_name("web", 3, "blue")  # never staged is the blue slot


@given(scaleset=ADMITTED, slot=st.sampled_from(SLOTS), ordinal=ORDINALS)
def test_pods_of_other_scalesets_with_a_name_of_the_same_shape_differ(
    scaleset: str, slot: str | None, ordinal: int
) -> None:
    # The near misses spelled out: instance N of web, web-N the ScaleSet, web's green slot and surge pods.
    for other in (f"{scaleset}-{ordinal}", f"{scaleset}-{STAGED_SLOT_WORD}-x", f"x-{scaleset}"):
        if admitted(other):
            assert _pod(other, slot, False, 0) != _pod(scaleset, slot, False, ordinal)


@pytest.mark.parametrize(
    ("refused", "would_collide_with"),
    [
        ("web-green", pod_name("web", 0, "green")),
        ("web-surge", pod_name("web", 0, surge=True)),
        ("web-green-surge", pod_name("web", 0, "green", surge=True)),
    ],
)
def test_a_name_ending_like_a_generated_name_is_refused_because_it_would_collide(
    refused: str, would_collide_with: str
) -> None:
    assert pod_name(refused, 0) == would_collide_with  # what the rule prevents
    assert not admitted(refused)


CLAIM_TEMPLATES = NAMES.filter(lambda n: DNS_LABEL.match(n) is not None)
ClaimId = tuple[str, str, int]  # claim template, slot, ordinal
CLAIMS = st.tuples(NEAR_NAMES, st.sampled_from([str(s) for s in Slot]), st.sampled_from([0, 1]))


@settings(max_examples=300)
@given(scaleset=NEAR_NAMES.filter(admitted), claims=st.lists(CLAIMS, min_size=2, max_size=100))
def test_no_two_claims_of_one_scaleset_share_a_name(scaleset: str, claims: list[ClaimId]) -> None:
    named: dict[str, set[ClaimId]] = {}
    for template, slot, ordinal in claims:
        named.setdefault(instance_claim_name(template, scaleset, ordinal, slot), set()).add(
            (template, slot, ordinal)
        )
    assert {name: ids for name, ids in named.items() if len(ids) > 1} == {}


def test_a_scaleset_named_green_would_give_two_of_its_claims_one_name_so_it_is_refused() -> None:
    assert instance_claim_name("data-green", "green", 0) == instance_claim_name("data", "green", 0, "green")
    assert not admitted("green")


def _claim_of(scaleset: str, template: str, ordinal: int, slot: str | None) -> Claim:
    """The claim the operator creates for that instance, as the API would return it."""
    body: dict[str, Any] = {"metadata": {"name": scaleset, "namespace": "ns", "uid": f"uid-{scaleset}"}}
    spec: Any = ScaleSet.model_validate(
        {
            "metadata": {"name": scaleset},
            "spec": {"template": TEMPLATE, "volumeClaimTemplates": [{"metadata": {"name": template}}]},
        }
    ).spec
    (claim,) = instance_claims(body, spec, ordinal, slot)
    return Claim.of(claim)


@settings(max_examples=300)
@given(
    claims=st.lists(st.tuples(ADMITTED, CLAIM_TEMPLATES, st.sampled_from(SLOTS), FEW_ORDINALS), max_size=60)
)
def test_a_claim_name_two_scalesets_meet_on_is_never_mounted_by_the_other(
    claims: list[tuple[str, str, str | None, int]],
) -> None:
    # `<claim>-<scaleset>-<ordinal>` (fixed by StatefulSet's convention) lets two ScaleSets meet on a name:
    # template data of web-x and template data-web of x both make data-web-x-0. Their labels tell them apart.
    for a in claims:
        for b in claims:
            if a[0] != b[0] and instance_claim_name(a[1], a[0], a[3], a[2]) == instance_claim_name(
                b[1], b[0], b[3], b[2]
            ):
                assert fit(_claim_of(*b), a[0], a[3], a[2]) == Fit.FOREIGN


def test_two_scalesets_can_meet_on_a_claim_name() -> None:
    assert instance_claim_name("data", "web-x", 0) == instance_claim_name("data-web", "x", 0)
    assert fit(_claim_of("x", "data-web", 0, None), "web-x", 0, None) == Fit.FOREIGN


HASHES = st.text("bcdfghjklmnpqrstvwxz2456789", min_size=1, max_size=10)


@given(first=st.tuples(ADMITTED, HASHES), second=st.tuples(ADMITTED, HASHES))
def test_no_two_scalesets_share_a_controller_revision_name(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    # revision_name is `<scaleset>-<hash>`, the hash from an alphabet without '-'.
    if f"{first[0]}-{first[1]}" == f"{second[0]}-{second[1]}":
        assert first == second
    assert revision_name(first[0], TEMPLATE).rsplit("-", 1)[0] == first[0]


LONGEST_ADMITTED = st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=MAX_NAME_LENGTH
).filter(admitted)


@given(scaleset=LONGEST_ADMITTED, slot=st.sampled_from(SLOTS), surge=st.booleans(), ordinal=ORDINALS)
def test_every_pod_name_is_a_hostname_of_at_most_63_characters(
    scaleset: str, slot: str | None, surge: bool, ordinal: int
) -> None:
    name = _pod(scaleset, slot, surge, ordinal)
    assert len(name) <= HOSTNAME_MAX_LENGTH and DNS_LABEL.match(name), name


@given(scaleset=LONGEST_ADMITTED, template=CLAIM_TEMPLATES, slot=st.sampled_from(SLOTS), ordinal=ORDINALS)
def test_every_claim_name_is_a_valid_object_name(
    scaleset: str, template: str, slot: str | None, ordinal: int
) -> None:
    name = instance_claim_name(template, scaleset, ordinal, slot)
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name


@given(scaleset=LONGEST_ADMITTED)
def test_every_revision_name_fits_the_label_it_is_written_in(scaleset: str) -> None:
    assert len(revision_name(scaleset, TEMPLATE)) <= 63  # a label value has at most 63 characters


def test_the_name_bound_is_tight() -> None:
    # The longest name: the green slot's surge pod of the last ordinal replicas <= 1000 allows.
    longest = "a" * MAX_NAME_LENGTH
    assert admitted(longest)
    assert len(pod_name(longest, MAX_REPLICAS - 1, "green", surge=True)) == HOSTNAME_MAX_LENGTH
    assert not admitted("a" * (MAX_NAME_LENGTH + 1))


@pytest.mark.parametrize("name", ["web.prod", "Web", "-web", "web-", "we_b", "green", "surge", "db-surge"])
def test_names_that_cannot_begin_a_hostname_or_end_like_a_generated_name_are_refused(name: str) -> None:
    assert not admitted(name)


@pytest.mark.parametrize("name", ["web", "evergreen", "web-greens", "green-web", "surge-1", "a", "9"])
def test_names_that_only_contain_a_generated_word_are_accepted(name: str) -> None:
    assert admitted(name)
