"""The reader: a pass's reads of one ScaleSet in one place, writing nothing, and only what the ScaleSet owns."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import UID, pod, scaleset

from scaleset_operator.control.context import InvalidInput
from scaleset_operator.control.kube import ApiError
from scaleset_operator.control.reader import Reader
from scaleset_operator.identity import LABEL_REVISION

LISTS = {
    "/apis/apps/v1/namespaces/shop/controllerrevisions": [
        {
            "metadata": {
                "name": "web-1",
                "labels": {LABEL_REVISION: "web-1"},
                "ownerReferences": [{"uid": UID}],
            }
        },
        {
            "metadata": {
                "name": "web-x",
                "labels": {LABEL_REVISION: "web-x"},
                "ownerReferences": [{"uid": "other"}],
            }
        },
    ],
    "/api/v1/namespaces/shop/pods": [
        pod(0, "web-1"),
        {**pod(1, "web-1"), "metadata": {**pod(1, "web-1")["metadata"], "ownerReferences": []}},
    ],
    "/api/v1/namespaces/shop/persistentvolumeclaims": [{"metadata": {"name": "data-web-0"}}],
    "/apis/fleet.scaleset.dev/v1alpha1/maintenanceconfigurations": [{"metadata": {"name": "nightly"}}],
    "/apis/fleet.scaleset.dev/v1alpha1/imagecatalogs": [{"metadata": {"name": "os"}}],
    "/api/v1/nodes": [{"metadata": {"name": "node-a"}}],
}
NAMESPACE = {"/api/v1/namespaces/shop": {"metadata": {"name": "shop", "labels": {"tier": "gold"}}}}


def fake(**objects: dict[str, object]) -> FakeKube:
    return FakeKube({path: {"items": items} for path, items in LISTS.items()} | objects)


def test_a_pass_reads_what_the_scaleset_owns_and_writes_nothing() -> None:
    kube = fake(**NAMESPACE)
    reads = Reader(kube).read(scaleset())
    assert list(reads.revisions) == ["web-1"]
    assert [p["metadata"]["name"] for p in reads.pods] == ["web-0"], "a pod it does not own is never touched"
    assert list(reads.claims) == ["data-web-0"]
    assert [c["metadata"]["name"] for c in reads.maintenance_configurations] == ["nightly"]
    assert reads.namespace_labels == {"tier": "gold"}
    assert [c["metadata"]["name"] for c in reads.image_catalogs] == ["os"]
    assert {c.method for c in kube.calls} == {"GET"}


@pytest.mark.parametrize(
    "spec,policy,reason",
    [
        ({"replicas": -1}, None, "InvalidSpec"),
        ({"upgradePolicyRef": {"name": "safe"}}, None, "PolicyNotFound"),
        ({"upgradePolicyRef": {"name": "safe"}}, {"spec": {"mode": "Sometimes"}}, "InvalidPolicy"),
    ],
)
def test_bad_input_is_refused_before_anything_else_is_read(
    spec: dict[str, object], policy: dict[str, object] | None, reason: str
) -> None:
    policies = (
        {"/apis/fleet.scaleset.dev/v1alpha1/namespaces/shop/upgradepolicies/safe": policy} if policy else {}
    )
    kube = fake(**policies)
    obj = scaleset()
    obj["spec"] = {**obj["spec"], **spec}
    with pytest.raises(InvalidInput) as refused:
        Reader(kube).read(obj)
    assert refused.value.reason == reason
    assert not any("controllerrevisions" in c.path or "/pods" in c.path for c in kube.calls)


POLICY_PATH = "/apis/fleet.scaleset.dev/v1alpha1/namespaces/shop/upgradepolicies/safe"
SERVICES_PATH = "/api/v1/namespaces/shop/services"
BUDGET_PATH = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets/web"


def listed(kube: FakeKube) -> set[str]:
    return {c.path for c in kube.calls if c.method == "GET"}


@pytest.mark.parametrize(
    "mode,status,services_read",
    [
        ("Rolling", {}, False),
        ("Staged", {}, True),
        # A set that was staged still selects a slot in its Services, whatever its policy says now.
        ("Rolling", {"staged": {"slot": "blue"}}, True),
    ],
)
def test_services_are_read_only_for_a_scaleset_that_is_or_was_staged(
    mode: str, status: dict[str, object], services_read: bool
) -> None:
    kube = fake(
        **NAMESPACE,
        **{POLICY_PATH: {"spec": {"mode": mode}}},
        **{SERVICES_PATH: {"items": [{"metadata": {"name": "front"}, "spec": {"selector": {"app": "web"}}}]}},
    )
    obj = scaleset(status)
    obj["spec"] = {**obj["spec"], "upgradePolicyRef": {"name": "safe"}}
    reads = Reader(kube).read(obj)
    assert (SERVICES_PATH in listed(kube)) is services_read
    assert (reads.services is not None) is services_read
    if services_read:
        assert reads.services is not None and list(reads.services) == ["front"]
    assert [n["metadata"]["name"] for n in reads.nodes] == ["node-a"]


@pytest.mark.parametrize(
    "enabled,status,stored,read",
    [
        (False, {}, None, False),
        (True, {}, None, True),  # asked for, none yet: read, found none
        (True, {}, {"metadata": {"name": "web"}}, True),
        (False, {"disruptionBudget": {"name": "web"}}, {"metadata": {"name": "web"}}, True),  # to delete it
    ],
)
def test_the_disruption_budget_is_read_when_asked_for_or_recorded(
    enabled: bool, status: dict[str, object], stored: dict[str, object] | None, read: bool
) -> None:
    kube = fake(**NAMESPACE, **({BUDGET_PATH: stored} if stored else {}))
    obj = scaleset(status)
    obj["spec"] = {**obj["spec"], "disruptionBudget": {"enabled": enabled}}
    reads = Reader(kube).read(obj)
    assert (BUDGET_PATH in listed(kube)) is read
    assert reads.disruption_budget_read is read
    assert reads.disruption_budget == stored


def test_what_a_pass_read_cannot_be_changed_by_the_pass() -> None:
    reads = Reader(fake(**NAMESPACE)).read(scaleset())
    with pytest.raises(TypeError):
        reads.revisions["web-2"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        reads.claims["data-web-1"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        reads.namespace_labels["tier"] = "bronze"  # type: ignore[index]
    with pytest.raises(AttributeError):
        reads.nodes = ()  # type: ignore[misc]


def test_a_server_that_serves_no_resource_quotas_enforces_none() -> None:
    kube = fake().refuse("GET", "/resourcequotas", 404)
    assert Reader(kube).resource_quotas("shop") == ()
    with pytest.raises(ApiError):
        Reader(fake().refuse("GET", "/resourcequotas", 403)).resource_quotas("shop")
