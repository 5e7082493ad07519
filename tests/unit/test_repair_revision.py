"""The revision an instance comes back on: where the rollout has it, or, after a Restart repair, the one it
ran (a restart does not move an instance to another revision)."""

from __future__ import annotations

from typing import Any

import pytest

from scaleset_operator.api.models import ScaleSetSpec, UpgradePolicySpec
from scaleset_operator.control.context import Snapshot
from scaleset_operator.control.instance_control import InstanceControl

TEMPLATE = {"spec": {"containers": [{"name": "os", "image": "app:v1"}]}}


def snapshot(repair: dict[str, Any] | None) -> Snapshot:
    revisions = {
        name: {"metadata": {"name": name}, "data": {"template": TEMPLATE}} for name in ("web-old", "web-new")
    }
    upgrade = {
        "locked": True,
        "toRevision": "web-new",
        "currentBatch": {"upgradeDomain": 0, "instances": ["web-0"], "revision": "web-new"},
    }
    status = {"upgrade": upgrade, **({"repairs": {"current": repair}} if repair else {})}
    return Snapshot(
        {"metadata": {"name": "web", "namespace": "default", "uid": "u"}, "status": status},
        ScaleSetSpec.model_validate({"replicas": 5, "template": TEMPLATE}),
        UpgradePolicySpec(),
        revisions,
        "web-new",
        "web-old",
        {},
        {},
        stored_status=status,
    )


@pytest.mark.parametrize(
    "repair,revision",
    [
        (None, "web-old"),  # domain 3, not reached by the rollout (its batch is domain 0)
        ({"instance": "web-3", "action": "Replace", "revision": "web-new"}, "web-old"),
        ({"instance": "web-3", "action": "Restart", "revision": "web-new"}, "web-new"),  # as it ran
        ({"instance": "web-2", "action": "Restart", "revision": "web-new"}, "web-old"),  # another instance's
        ({"instance": "web-3", "action": "Restart", "revision": "web-gone"}, "web-old"),  # a revision pruned
    ],
)
def test_an_instance_comes_back_where_the_rollout_has_it_or_as_it_ran_after_a_restart(
    repair: dict[str, Any] | None, revision: str
) -> None:
    control = InstanceControl(kube=None, events=None)  # type: ignore[arg-type]  (no call is made)
    assert control._revision_for_new_instance(snapshot(repair), 3) == revision


def test_an_instance_in_the_running_batch_comes_back_on_the_new_revision() -> None:
    control = InstanceControl(kube=None, events=None)  # type: ignore[arg-type]
    assert control._revision_for_new_instance(snapshot(None), 0) == "web-new"
