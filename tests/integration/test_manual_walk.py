"""Manual mode on a live API: a walk belongs to one update, and the next update starts unwalked.

DESIGN behaviour 9: "nothing moves until the user walks the next UD of this update; a new update
starts unwalked". A GitOps repository keeps spec.walkUpgradeDomain as it was last written; applying
it again with a new template must not walk the new update.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from typer.testing import CliRunner

from scaleset_operator.cli.main import app
from scaleset_operator.control.kube import MERGE_PATCH, Kube, fleet_path
from scaleset_operator.identity import LABEL_REVISION, LABEL_UPGRADE_DOMAIN
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    create,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def upgrade(kube: Kube, namespace: str) -> dict[str, Any]:
    status = kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}
    return dict(status.get("upgrade") or {})


def domains_on(kube: Kube, namespace: str, revision: str) -> set[int]:
    return {
        int(p["metadata"]["labels"][LABEL_UPGRADE_DOMAIN])
        for p in pods_of(kube, namespace, "web")
        if p["metadata"]["labels"].get(LABEL_REVISION) == revision
    }


def apply(kube: Kube, namespace: str, image: str, walk: int | None) -> str:
    """Apply the manifest as a GitOps tool would: the template and spec.walkUpgradeDomain together;
    returns the update revision once the operator has seen it."""
    body = scaleset_body("web", 6, image=image, policy="manual", upgrade_domain_count=3)
    before = (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get("updateRevision")
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {"spec": {"template": body["spec"]["template"], "walkUpgradeDomain": walk}},
        MERGE_PATCH,
    )

    def seen() -> str | None:
        scaleset = kube.get(fleet_path("scalesets", namespace, "web"))
        status = scaleset.get("status") or {}
        current = status.get("observedGeneration") == scaleset["metadata"]["generation"]
        revision = status.get("updateRevision")
        return revision if current and revision != before else None

    revision: str = wait_for(seen, TIMEOUT, f"the operator to see {image}")
    return revision


def walk(kubeconfig: str, namespace: str, domain: int) -> Any:
    return CliRunner().invoke(
        app, ["walk", "web", str(domain), "-n", namespace, "--kubeconfig", kubeconfig, "--timeout", "20"]
    )


def test_the_second_upgrade_waits_at_domain_0_until_walked_again_and_a_value_left_in_git_walks_nothing(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    create(
        kube,
        namespace,
        policy_body(
            "manual",
            mode="Manual",
            rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100},
        ),
    )
    create(kube, namespace, scaleset_body("web", 6, policy="manual", upgrade_domain_count=3))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")

    # No upgrade to walk: refused, and answered.
    refused = walk(kubeconfig, namespace, 0)
    assert refused.exit_code == 1, refused.output
    assert "Refused: No upgrade is in progress" in refused.output

    # The first update, walked to its last domain from Git (spec.walkUpgradeDomain changes to 2).
    first = apply(kube, namespace, f"{IMAGE}:v2", walk=2)
    wait_for(lambda: domains_on(kube, namespace, first) == {0, 1, 2}, TIMEOUT, "the first update everywhere")
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready on the first update")
    assert upgrade(kube, namespace)["walk"]["revision"] == first

    # The second update, with walkUpgradeDomain still 2 in Git: nothing moves.
    with PodSampler(kube, namespace, "web") as sampler:
        second = apply(kube, namespace, f"{IMAGE}:v3", walk=2)
        waiting = wait_for(
            lambda: (u := upgrade(kube, namespace)).get("reason") == "WaitingForWalk" and u,
            TIMEOUT,
            "the second update to wait for a walk",
        )
        time.sleep(2)  # passes go by; still nothing of the second update runs
    assert waiting["phase"] == "Paused"
    assert f"no upgrade domain of {second} is walked yet" in waiting["message"]
    assert "a new update starts unwalked" in waiting["message"]
    assert all(second not in revisions for revisions in _revisions_seen(sampler)), (
        "an instance moved unwalked"
    )

    # Walked again, for this update: domain 0 and only it.
    accepted = walk(kubeconfig, namespace, 0)
    assert accepted.exit_code == 0, accepted.output
    assert f"Accepted: Upgrade domain 0 of {second} may be updated." in accepted.output
    assert upgrade(kube, namespace)["lastAction"]["action"] == "Walk"
    wait_for(lambda: domains_on(kube, namespace, second) == {0}, TIMEOUT, "domain 0 of the second update")
    wait_for(
        lambda: upgrade(kube, namespace).get("reason") == "WaitingForWalk", TIMEOUT, "domain 1 to wait again"
    )
    assert domains_on(kube, namespace, second) == {0}
    assert walk(kubeconfig, namespace, 2).exit_code == 0
    wait_for(
        lambda: domains_on(kube, namespace, second) == {0, 1, 2}, TIMEOUT, "the second update everywhere"
    )
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready on the second update")


def _revisions_seen(sampler: PodSampler) -> list[set[str | None]]:
    return [{revision for revision, _, _ in sample.pods.values()} for sample in sampler.samples]
