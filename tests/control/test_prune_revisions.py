"""Old ControllerRevisions are deleted exactly as the pass read them: uid and resourceVersion preconditions,
so a revision changed or replaced since is left alone, and that refusal (409) ends the pass."""

from __future__ import annotations

from typing import Any

import pytest
from fake_kube import FakeKube
from scaleset_fixtures import UID, pod, snapshot

from scaleset_operator.control.context import Conflict
from scaleset_operator.control.reconcile import Reconciler
from scaleset_operator.identity import LABEL_REVISION

REVISIONS = "/apis/apps/v1/namespaces/shop/controllerrevisions"


def revision(number: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"web-{number}",
            "uid": f"uid-revision-{number}",
            "resourceVersion": f"{100 + number}",
            "labels": {LABEL_REVISION: f"web-{number}"},
            "ownerReferences": [{"uid": UID, "controller": True}],
        },
        "revision": number,
    }


def prune(kube: FakeKube) -> None:
    revisions = {f"web-{n}": revision(n) for n in (1, 2, 3, 4)}
    state = snapshot({0: pod(0, "web-4")}, revision="web-4", revisions=revisions, revisionHistoryLimit=1)
    Reconciler(kube)._prune_revisions(state)


def deletes(kube: FakeKube) -> list[tuple[str, Any]]:
    return [(c.path.rsplit("/", 1)[1], c.body["preconditions"]) for c in kube.calls if c.method == "DELETE"]


def test_the_oldest_revisions_beyond_the_limit_are_deleted_as_they_were_read() -> None:
    kube = FakeKube()
    prune(kube)
    assert deletes(kube) == [
        ("web-1", {"uid": "uid-revision-1", "resourceVersion": "101"}),
        ("web-2", {"uid": "uid-revision-2", "resourceVersion": "102"}),
    ]


def test_a_revision_changed_since_it_was_read_is_not_deleted_and_the_pass_ends() -> None:
    kube = FakeKube().refuse("DELETE", f"{REVISIONS}/web-1", 409)
    with pytest.raises(Conflict, match="ControllerRevision web-1 changed"):
        prune(kube)
    assert [name for name, _ in deletes(kube)] == ["web-1"], "nothing more is deleted after the refusal"


def test_a_revision_gone_already_is_no_error() -> None:
    kube = FakeKube().refuse("DELETE", f"{REVISIONS}/web-1", 404)
    prune(kube)
    assert [name for name, _ in deletes(kube)] == ["web-1", "web-2"]
