"""The reader: a pass's reads of one ScaleSet in one place, writing nothing, and only what the ScaleSet owns."""

from __future__ import annotations

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import UID, pod, scaleset

from scaleset_operator.control.context import InvalidInput
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
