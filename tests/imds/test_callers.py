"""Who may call the endpoint, as pure rules: the tables behind the endpoint's 403s, and its rate limit."""

from __future__ import annotations

import pytest

from scaleset_operator.imds.callers import Instance, PodRecord, Refusal, caller_by_address, caller_by_pod
from scaleset_operator.imds.limits import RequestRate, retry_after
from scaleset_operator.imds.tokens import BoundPod, Rejected, bound_pod

IP = "10.0.0.7"
NODES = frozenset({"10.1.0.1"})


def pod(name: str, phase: str = "Running", ip: str = IP, **fields: object) -> PodRecord:
    values: dict[str, object] = {"instance": True} | fields
    return PodRecord("shop", name, f"uid-{name}", phase, frozenset({ip}), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("holders", "served", "expected"),
    [
        ([pod("web-0")], None, Instance("shop", "web-0", IP, "uid-web-0")),
        # A finished pod keeps its IP in status after the network gave it back.
        ([pod("old", "Succeeded"), pod("web-1")], None, Instance("shop", "web-1", IP, "uid-web-1")),
        ([pod("web-0"), pod("web-1")], None, "held by 2 pods"),
        ([pod("web-0"), pod("sidecar", instance=False)], None, "held by 2 pods"),
        ([pod("web-0", "Pending")], None, "Pending, not Running"),
        ([pod("old", "Succeeded")], None, "finished"),
        ([pod("old", "Failed"), pod("older", "Succeeded")], None, "finished"),
        ([], None, "no pod has the address"),
        ([pod("tool", instance=False)], None, "belongs to no ScaleSet"),
        ([pod("web-0", host_network=True)], None, "a node's"),
        ([pod("web-0")], frozenset({"other"}), "does not serve"),
        ([pod("web-0")], frozenset({"shop"}), Instance("shop", "web-0", IP, "uid-web-0")),
    ],
)
def test_an_address_names_an_instance_only_when_it_is_one_running_instances_alone(
    holders: list[PodRecord], served: frozenset[str] | None, expected: Instance | str
) -> None:
    found = caller_by_address(IP, holders, NODES, served)
    if isinstance(expected, Instance):
        assert found == expected
    else:
        assert isinstance(found, Refusal) and expected in found.reason
        assert found.reason.startswith("Forbidden.")


def test_a_nodes_own_address_names_no_instance_even_when_one_pod_lists_it() -> None:
    found = caller_by_address("10.1.0.1", [pod("web-0", ip="10.1.0.1")], NODES)
    assert isinstance(found, Refusal) and "a node's" in found.reason


def test_a_token_names_the_instance_it_is_bound_to_while_it_runs() -> None:
    assert caller_by_pod(pod("web-0"), "shop/web-0") == Instance("shop", "web-0", uid="uid-web-0")
    gone = caller_by_pod(None, "shop/web-0")
    assert isinstance(gone, Refusal) and "no longer exists" in gone.reason
    done = caller_by_pod(pod("web-0", "Succeeded"), "shop/web-0")
    assert isinstance(done, Refusal) and "not Running" in done.reason


def review(**status: object) -> dict[str, object]:
    return {"status": status}


BOUND_USER = {
    "username": "system:serviceaccount:shop:default",
    "extra": {
        "authentication.kubernetes.io/pod-name": ["web-0"],
        "authentication.kubernetes.io/pod-uid": ["uid-web-0"],
    },
}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            review(authenticated=True, audiences=["scaleset-operator"], user=BOUND_USER),
            BoundPod("shop", "web-0", "uid-web-0"),
        ),
        (review(authenticated=False, error="token has expired"), "token has expired"),
        (review(authenticated=True, audiences=["api"], user=BOUND_USER), "audience scaleset-operator"),
        # A token from a Secret (or TokenRequest without a pod) is bound to no pod.
        (
            review(
                authenticated=True,
                audiences=["scaleset-operator"],
                user={"username": "system:serviceaccount:shop:default"},
            ),
            "bound to no pod",
        ),
        (
            review(
                authenticated=True,
                audiences=["scaleset-operator"],
                user={"username": "alice", "extra": BOUND_USER["extra"]},
            ),
            "bound to no pod",
        ),
    ],
)
def test_a_token_review_names_the_pod_only_for_a_valid_token_of_the_audience(
    answer: dict[str, object], expected: BoundPod | str
) -> None:
    found = bound_pod(answer, "scaleset-operator")
    if isinstance(expected, BoundPod):
        assert found == expected
    else:
        assert isinstance(found, Rejected) and expected in found.reason


def test_five_requests_a_second_per_instance_and_the_sixth_waits() -> None:
    rate = RequestRate()
    assert [rate.allow("a", 10.0 + i * 0.1) for i in range(5)] == [None] * 5
    wait = rate.allow("a", 10.5)
    assert wait == pytest.approx(0.5) and retry_after(wait) == "1"
    assert rate.allow("b", 10.5) is None, "each instance has its own window"
    assert rate.allow("a", 11.0) is None, "the first request of the window is a second old"
    assert rate.allow("a", 11.05) is not None, "a refused request is not counted, the others still are"


def test_an_idle_instance_is_forgotten() -> None:
    rate = RequestRate()
    for i in range(5000):
        rate.allow(f"i-{i}", float(i))
    assert len(rate._seen) <= 4097


class ReviewingKube:
    """Answers TokenReviews as the API server would for one good token; counts them."""

    def __init__(self, refuse_with: int | None = None) -> None:
        self.bodies: list[dict[str, object]] = []
        self.refuse_with = refuse_with

    def create(self, path: str, body: dict[str, object]) -> dict[str, object]:
        from scaleset_operator.control.kube import ApiError

        assert path == "/apis/authentication.k8s.io/v1/tokenreviews"
        self.bodies.append(body)
        if self.refuse_with:
            raise ApiError(self.refuse_with, "Forbidden", "cannot create tokenreviews")
        good = body["spec"]["token"] == "good"  # type: ignore[index]
        return review(authenticated=good, audiences=["scaleset-operator"] if good else [], user=BOUND_USER)


def test_a_reviewed_token_is_kept_for_a_while_and_a_refused_review_is_asked_again() -> None:
    from scaleset_operator.imds.tokens import REVIEW_TTL_SECONDS, TokenReviewer

    now = [0.0]
    kube = ReviewingKube()
    reviewer = TokenReviewer(kube, clock=lambda: now[0])  # type: ignore[arg-type]
    assert reviewer.review("good") == BoundPod("shop", "web-0", "uid-web-0")
    assert reviewer.review("good") == BoundPod("shop", "web-0", "uid-web-0")
    assert len(kube.bodies) == 1, "one review for a burst of requests with one token"
    assert kube.bodies[0]["spec"] == {"token": "good", "audiences": ["scaleset-operator"]}
    assert isinstance(reviewer.review("bad"), Rejected)
    now[0] += REVIEW_TTL_SECONDS + 1
    reviewer.review("good")
    assert len(kube.bodies) == 3, "asked again once the answer is old"
    forbidden = TokenReviewer(ReviewingKube(refuse_with=403))  # type: ignore[arg-type]
    found = forbidden.review("good")
    assert isinstance(found, Rejected) and "could not be reviewed" in found.reason
    forbidden.review("good")
    assert len(forbidden.kube.bodies) == 2  # type: ignore[attr-defined]
