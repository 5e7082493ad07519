"""Instances that fail are repaired, on a live API: an evicted or deleted instance comes back with its
name, ordinal, upgrade domain and data disks, on the revision it should run; automatic repairs after the
grace period, within the budget; evictions refused by a PodDisruptionBudget wait and delete nothing;
the PodDisruptionBudget a ScaleSet owns follows its policy."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path, group_path
from scaleset_operator.identity import LABEL_ORDINAL, LABEL_REVISION, LABEL_SCALESET, LABEL_UPGRADE_DOMAIN
from tests.integration.conftest import REPAIR_GRACE_DIVISOR
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    condition,
    create,
    is_ready,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def _pod(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get_or_none(core_path("pods", namespace, name))


def _back(kube: Kube, namespace: str, name: str, old_uid: str) -> dict[str, Any] | None:
    """The instance `name` as a new pod (another uid) that is Ready, once it is."""
    pod = _pod(kube, namespace, name)
    return pod if pod and pod["metadata"]["uid"] != old_uid and is_ready(pod) else None


def _claim_uid(kube: Kube, namespace: str, instance: str) -> str:
    claim = kube.get(core_path("persistentvolumeclaims", namespace, f"data-{instance}"))
    uid: str = claim["metadata"]["uid"]
    return uid


def _mounted_claims(pod: dict[str, Any]) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"].get("volumes") or []
        if v.get("persistentVolumeClaim")
    ]


def test_an_evicted_instance_comes_back_with_its_claims_on_the_revision_it_should_run(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    # Manual mode with upgrade domain 0 walked: web-0 runs the new revision, web-3 (domain 3) the old one.
    # Each, evicted by its node, must come back where the rollout has it: web-0 new, web-3 old.
    create(kube, namespace, policy_body("walk", mode="Manual"))
    create(kube, namespace, scaleset_body("web", 5, policy="walk", claims=True))
    ready = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    old = ready["status"]["currentRevision"]
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"walkUpgradeDomain": 0}}, MERGE_PATCH)

    def walked() -> str | None:
        status = kube.get(fleet_path("scalesets", namespace, "web"))["status"]
        new = status.get("updateRevision")
        pod = _pod(kube, namespace, "web-0")
        on_new = bool(pod and pod["metadata"]["labels"][LABEL_REVISION] == new and is_ready(pod))
        return new if new != old and on_new else None

    new = wait_for(walked, TIMEOUT, "upgrade domain 0 on the new revision")
    claims = {name: _claim_uid(kube, namespace, name) for name in ("web-0", "web-3")}
    uids = {name: (_pod(kube, namespace, name) or {})["metadata"]["uid"] for name in ("web-0", "web-3")}

    for name in ("web-0", "web-3"):
        kubelet.evict(namespace, name)
    for name, revision, domain in (("web-0", new, "0"), ("web-3", old, "3")):
        pod = wait_for(lambda n=name: _back(kube, namespace, n, uids[n]), TIMEOUT, f"{name} back and Ready")
        labels = pod["metadata"]["labels"]
        assert labels[LABEL_REVISION] == revision, f"{name} came back on the wrong revision"
        assert (labels[LABEL_ORDINAL], labels[LABEL_UPGRADE_DOMAIN]) == (name.rsplit("-", 1)[1], domain)
        assert _mounted_claims(pod) == [f"data-{name}"]
        assert _claim_uid(kube, namespace, name) == claims[name], f"{name} lost its data disk"
    # Nothing else moved: the rollout still waits for domain 1 to be walked.
    revisions = {
        p["metadata"]["name"]: p["metadata"]["labels"][LABEL_REVISION]
        for p in pods_of(kube, namespace, "web")
    }
    assert revisions == {"web-0": new, "web-1": old, "web-2": old, "web-3": old, "web-4": old}


def test_a_deleted_instance_comes_back_with_its_claims(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 3, claims=True))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    claim = _claim_uid(kube, namespace, "web-2")
    uid = (_pod(kube, namespace, "web-2") or {})["metadata"]["uid"]
    kube.delete(core_path("pods", namespace, "web-2"))
    pod = wait_for(lambda: _back(kube, namespace, "web-2", uid), TIMEOUT, "web-2 back and Ready")
    assert _mounted_claims(pod) == ["data-web-2"]
    assert _claim_uid(kube, namespace, "web-2") == claim


# --------------------------------------------------------------------------- automatic repairs

REPAIRS = {"enabled": True, "gracePeriod": "10m"}
# The operator under test counts grace periods REPAIR_GRACE_DIVISOR times faster (a test-only setting):
# the API's minimum of 10 minutes is this many real seconds.
GRACE_SECONDS = 600 / REPAIR_GRACE_DIVISOR


def _uids(kube: Kube, namespace: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}


def _repairs(kube: Kube, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
        "repairs"
    ) or {}
    return found


def _events(kube: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.list(core_path("events", namespace)) if e.get("reason") == reason]


def test_an_instance_not_ready_past_its_grace_period_is_replaced_with_its_data_disk(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    create(kube, namespace, scaleset_body("web", 3, claims=True, automaticRepairs=REPAIRS))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    before = _uids(kube, namespace)
    claim = _claim_uid(kube, namespace, "web-1")
    kubelet.set_behaviour(namespace, "web-1", "never-ready")
    wait_for(lambda: not is_ready(_pod(kube, namespace, "web-1") or {}), TIMEOUT, "web-1 not Ready")
    unready_at = time.monotonic()
    pod = wait_for(lambda: _back(kube, namespace, "web-1", before["web-1"]), TIMEOUT, "web-1 repaired")
    assert time.monotonic() - unready_at >= GRACE_SECONDS - 1, "repaired before its grace period ended"
    assert _mounted_claims(pod) == ["data-web-1"] and _claim_uid(kube, namespace, "web-1") == claim
    after = _uids(kube, namespace)
    assert {n: after[n] for n in ("web-0", "web-2")} == {n: before[n] for n in ("web-0", "web-2")}
    line = wait_for(
        lambda: (_repairs(kube, namespace).get("history") or [None])[-1], TIMEOUT, "a history line"
    )
    assert (line["instance"], line["action"], line["result"]) == ("web-1", "Replace", "Repaired")
    assert not _repairs(kube, namespace).get("current")
    started = wait_for(lambda: _events(kube, namespace, "RepairStarted"), TIMEOUT, "the RepairStarted Event")
    assert [e["message"].split(":")[0] for e in started] == ["Replacing web-1"]


def test_repairs_wait_while_more_instances_are_down_than_the_budget_allows(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    # 5 instances at maxUnhealthyInstancePercent 20 %: one may be down. With two down, neither is
    # repaired; once one is well again, the other is.
    create(kube, namespace, scaleset_body("web", 5, automaticRepairs=REPAIRS))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    before = _uids(kube, namespace)
    for name in ("web-1", "web-3"):
        kubelet.set_behaviour(namespace, name, "never-ready")
    held = wait_for(
        lambda: (r := _repairs(kube, namespace)).get("reason") == "RepairsHeldByBudget" and r,
        TIMEOUT,
        "repairs held by the budget",
    )
    assert held["message"].startswith("2 of 5 instances are unhealthy")
    time.sleep(1.0)
    assert _uids(kube, namespace) == before, "an instance was repaired beyond the budget"
    kubelet.set_behaviour(namespace, "web-3", None)
    wait_for(lambda: _back(kube, namespace, "web-1", before["web-1"]), TIMEOUT, "web-1 repaired")
    assert _uids(kube, namespace)["web-3"] == before["web-3"]


# --------------------------------------------------------------------------- PodDisruptionBudgets


def _budget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }


def _pdb_path(namespace: str, name: str | None = None) -> str:
    return group_path("policy", "v1", "poddisruptionbudgets", namespace, name)


def test_an_eviction_refused_by_a_users_budget_waits_naming_it_and_deletes_nothing(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, policy_body("reimage", updateMethod="Reimage"))
    create(kube, namespace, scaleset_body("web", 3, policy="reimage"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    kube.create(_pdb_path(namespace), _budget("web-budget", minAvailable=3))
    wait_for(
        lambda: (kube.get(_pdb_path(namespace, "web-budget")).get("status") or {}).get("currentHealthy") == 3,
        TIMEOUT,
        "the budget to count the instances",
    )
    before = _uids(kube, namespace)
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2")
        upgrade = wait_for(
            lambda: (
                (u := kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"]).get("reason")
                == "EvictionBlocked"
                and u
            ),
            TIMEOUT,
            "the batch to wait for the budget",
        )
        assert "PodDisruptionBudget web-budget" in upgrade["message"]
        assert "needs 3 healthy pods and has 3 currently" in upgrade["message"]
        ready = condition(kube.get(fleet_path("scalesets", namespace, "web")), "Ready")
        assert ready is not None and ready["reason"] == "EvictionBlocked"
        time.sleep(1.0)
    assert all(
        {name: uid for name, (_, _, uid) in sample.pods.items()} == before for sample in sampler.samples
    ), "a pod was deleted while the budget refused its eviction"
    assert wait_for(lambda: _events(kube, namespace, "EvictionBlocked"), TIMEOUT, "an EvictionBlocked Event")
    kube.delete(_pdb_path(namespace, "web-budget"))
    wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] == s["status"]["updateRevision"]
        ),
        TIMEOUT,
        "the rollout to finish once the budget is gone",
    )


def test_the_disruption_budget_the_scaleset_owns_follows_its_policy_and_goes_when_disabled(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, policy_body("budget", rollingUpgrade={"maxUnhealthyInstancePercent": 20}))
    body = scaleset_body("web", 10, policy="budget", disruptionBudget={"enabled": True})
    scaleset = create(kube, namespace, body)
    pdb = wait_for(lambda: kube.get_or_none(_pdb_path(namespace, "web")), TIMEOUT, "the budget")
    assert pdb["spec"]["maxUnavailable"] == 2  # 20 % of 10
    assert pdb["spec"]["selector"] == {"matchLabels": {LABEL_SCALESET: "web"}}
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    (owner,) = pdb["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "ScaleSet",
        scaleset["metadata"]["uid"],
        True,
    )
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    settled = wait_for(
        lambda: (
            (s := kube.get(_pdb_path(namespace, "web")).get("status") or {}).get("currentHealthy") == 10 and s
        ),
        90,
        "the budget's status",
    )
    # The expected count comes from the ScaleSet's scale subresource: 10 replicas, 8 must stay healthy.
    assert (settled["expectedPods"], settled["desiredHealthy"], settled["disruptionsAllowed"]) == (10, 8, 2)

    kube.patch(
        fleet_path("upgradepolicies", namespace, "budget"),
        {"spec": {"rollingUpgrade": {"maxUnhealthyInstancePercent": 40}}},
        MERGE_PATCH,
    )
    wait_for(
        lambda: kube.get(_pdb_path(namespace, "web"))["spec"]["maxUnavailable"] == 4, TIMEOUT, "40 % of 10"
    )
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"replicas": 5}}, MERGE_PATCH)
    wait_for(
        lambda: kube.get(_pdb_path(namespace, "web"))["spec"]["maxUnavailable"] == 2, TIMEOUT, "40 % of 5"
    )
    status = wait_for(
        lambda: (
            (kube.get(fleet_path("scalesets", namespace, "web"))["status"].get("disruptionBudget") or {}).get(
                "maxUnavailable"
            )
            == 2
        ),
        TIMEOUT,
        "status.disruptionBudget",
    )
    assert status

    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {"spec": {"disruptionBudget": {"enabled": False}}},
        MERGE_PATCH,
    )
    wait_for(lambda: kube.get_or_none(_pdb_path(namespace, "web")) is None, TIMEOUT, "the budget deleted")
    wait_for(
        lambda: "disruptionBudget" not in kube.get(fleet_path("scalesets", namespace, "web"))["status"],
        TIMEOUT,
        "status.disruptionBudget gone",
    )


def test_a_budget_of_the_same_name_that_is_not_the_scalesets_is_left_alone_and_reported(
    kube: Kube, namespace: str
) -> None:
    foreign = kube.create(_pdb_path(namespace), _budget("web", minAvailable=1))
    create(kube, namespace, scaleset_body("web", 2, disruptionBudget={"enabled": True}))
    problem = wait_for(
        lambda: (
            (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {})
            .get("disruptionBudget", {})
            .get("problem")
        ),
        TIMEOUT,
        "the name reported",
    )
    assert problem.startswith("PodDisruptionBudget web exists and does not belong to this ScaleSet")
    kube.patch(
        fleet_path("scalesets", namespace, "web"),
        {"spec": {"disruptionBudget": {"enabled": False}}},
        MERGE_PATCH,
    )
    time.sleep(1.0)
    kept = kube.get(_pdb_path(namespace, "web"))
    assert kept["metadata"]["uid"] == foreign["metadata"]["uid"] and not kept["metadata"].get(
        "ownerReferences"
    )
    assert kept["spec"] == foreign["spec"], "a budget the ScaleSet does not own was changed"
