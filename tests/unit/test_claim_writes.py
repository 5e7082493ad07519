"""The claim writes of InstanceControl, against a recording fake of the API: every delete is fenced by the
claim's uid and resourceVersion, every owner-reference patch by its resourceVersion, and a refusal of
either (409) ends the pass with Conflict, for the next pass to decide again from a fresh read."""

from __future__ import annotations

from typing import Any

import pytest

from scaleset_operator.api.models import ScaleSetSpec, UpgradePolicySpec
from scaleset_operator.control.context import Conflict, Snapshot
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.kube import ApiError, Kube
from scaleset_operator.identity import ANNOTATION_CREATED_BY, LABEL_ORDINAL, LABEL_SCALESET

UID = "uid-web"
TEMPLATE = {"spec": {"containers": [{"name": "os", "image": "app:v1"}]}}


class RecordingKube(Kube):
    """Answers every write with the body it was sent, or with `refuse` (a status code) for `refused` verbs."""

    def __init__(self, refuse: int | None = None, refused: str = "") -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.refuse, self.refused = refuse, refused

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        self.sent.append((method, path, body))
        if self.refuse is not None and method == self.refused:
            raise ApiError(self.refuse, "Conflict", "Precondition failed")
        return dict(body or {}) if method != "DELETE" else {}


def claim(
    ordinal: int, *, created_by: str | None = UID, refs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"data-web-{ordinal}",
            "namespace": "shop",
            "uid": f"uid-claim-{ordinal}",
            "resourceVersion": f"{40 + ordinal}",
            "labels": {LABEL_SCALESET: "web", LABEL_ORDINAL: str(ordinal)},
            "annotations": {ANNOTATION_CREATED_BY: created_by} if created_by else {},
            "ownerReferences": refs or [],
        }
    }


def snapshot(claims: list[dict[str, Any]], replicas: int = 1, **retention: str) -> Snapshot:
    spec = ScaleSetSpec.model_validate(
        {
            "replicas": replicas,
            "template": TEMPLATE,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            "persistentVolumeClaimRetentionPolicy": retention,
        }
    )
    scaleset = {"metadata": {"name": "web", "namespace": "shop", "uid": UID, "resourceVersion": "1"}}
    return Snapshot(
        scaleset,
        spec,
        UpgradePolicySpec(),
        revisions={},
        update_revision="web-1",
        current_revision="web-1",
        pods={0: {"metadata": {"name": "web-0"}}},
        surges={},
        claims={c["metadata"]["name"]: c for c in claims},
    )


def control(kube: Kube) -> InstanceControl:
    return InstanceControl(kube, EventRecorder(kube))


def test_a_released_claim_is_deleted_with_its_uid_and_resource_version_as_preconditions() -> None:
    kube = RecordingKube()
    control(kube)._release_claims(snapshot([claim(0), claim(1), claim(2)], whenScaled="Delete"))
    deletes = [(path, body) for method, path, body in kube.sent if method == "DELETE"]
    assert [path.rsplit("/", 1)[1] for path, _ in deletes] == ["data-web-2", "data-web-1"]
    assert deletes[0][1]["preconditions"] == {"uid": "uid-claim-2", "resourceVersion": "42"}
    assert deletes[1][1]["preconditions"] == {"uid": "uid-claim-1", "resourceVersion": "41"}


def test_a_claim_changed_since_it_was_read_is_not_deleted_and_the_pass_ends() -> None:
    kube = RecordingKube(refuse=409, refused="DELETE")
    with pytest.raises(Conflict):
        control(kube)._release_claims(snapshot([claim(1), claim(2)], whenScaled="Delete"))
    assert [m for m, _, _ in kube.sent] == ["DELETE"], "nothing more is written after the refusal"


def test_claims_of_an_earlier_scaleset_are_never_deleted_by_a_scale_down() -> None:
    kube = RecordingKube()
    control(kube)._release_claims(snapshot([claim(1, created_by="uid-earlier")], whenScaled="Delete"))
    assert kube.sent == []


def test_the_owner_reference_patch_carries_the_resource_version_it_was_decided_on() -> None:
    kube = RecordingKube()
    ours = {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "ScaleSet", "name": "web", "uid": UID}
    control(kube).sync_claim_owners(snapshot([claim(0, refs=[ours])], whenDeleted="Retain"))
    ((method, path, body),) = kube.sent
    assert (method, path) == ("PATCH", "/api/v1/namespaces/shop/persistentvolumeclaims/data-web-0")
    assert body == {"metadata": {"resourceVersion": "40", "ownerReferences": None}}


def test_an_owner_reference_patch_refused_by_its_resource_version_ends_the_pass() -> None:
    kube = RecordingKube(refuse=409, refused="PATCH")
    with pytest.raises(Conflict):
        control(kube).sync_claim_owners(snapshot([claim(0), claim(1)], whenDeleted="Delete"))
    assert len(kube.sent) == 1
