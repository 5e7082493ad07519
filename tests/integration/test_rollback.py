"""Rollback and restart on a live API: asked for by annotation or CLI, started by the policy, refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from typer.testing import CliRunner

from scaleset_operator.cli.main import app
from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path
from scaleset_operator.identity import ANNOTATION_RESTART, ANNOTATION_ROLLBACK, LABEL_REVISION
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    condition,
    create,
    is_ready,
    never_ready,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    stalled,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

TIMEOUT = 60


def get(kube: Kube, namespace: str, name: str = "web") -> dict[str, Any]:
    return kube.get(fleet_path("scalesets", namespace, name))


def upgrade_of(kube: Kube, namespace: str, name: str = "web") -> dict[str, Any]:
    upgrade: dict[str, Any] = (get(kube, namespace, name).get("status") or {}).get("upgrade") or {}
    return upgrade


def annotate(kube: Kube, namespace: str, key: str, name: str = "web") -> None:
    kube.patch(
        fleet_path("scalesets", namespace, name), {"metadata": {"annotations": {key: "true"}}}, MERGE_PATCH
    )


def annotations(kube: Kube, namespace: str, name: str = "web") -> dict[str, str]:
    return get(kube, namespace, name)["metadata"].get("annotations") or {}


def identities(kube: Kube, namespace: str, name: str = "web") -> dict[str, tuple[str, str, int]]:
    """Each instance's uid, revision and restart count: what "left alone" means."""
    return {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            p["metadata"]["labels"][LABEL_REVISION],
            sum(s.get("restartCount", 0) for s in (p.get("status") or {}).get("containerStatuses") or []),
        )
        for p in pods_of(kube, namespace, name)
    }


def reasons(kube: Kube, namespace: str, name: str = "web") -> list[tuple[str, str]]:
    events = kube.list(core_path("events", namespace))
    mine = [e for e in events if e["involvedObject"].get("name") == name]
    mine.sort(key=lambda e: (e.get("lastTimestamp") or "", e["metadata"].get("resourceVersion") or ""))
    return [(e["type"], e["reason"]) for e in mine]


def ready_on(kube: Kube, namespace: str, revision: str, name: str = "web") -> dict[str, Any] | None:
    scaleset = scaleset_ready(kube, namespace, name)
    return scaleset if scaleset and scaleset["status"]["currentRevision"] == revision else None


def rolled_back(kube: Kube, namespace: str, name: str = "web") -> dict[str, Any] | None:
    upgrade = upgrade_of(kube, namespace, name)
    return upgrade if upgrade.get("phase") == "Failed" and upgrade.get("rolledBackRevision") else None


def on_revision(kube: Kube, namespace: str, revision: str, name: str = "web") -> set[str]:
    return {
        p["metadata"]["name"]
        for p in pods_of(kube, namespace, name)
        if p["metadata"]["labels"][LABEL_REVISION] == revision
    }


def test_rollback_returns_updated_instances_domain_by_domain_and_leaves_the_rest_alone(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "3s"}))
    create(kube, namespace, scaleset_body("web", 10, policy="slow", claims=True))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
        "currentRevision"
    ]
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    second = wait_for(lambda: upgrade_of(kube, namespace).get("toRevision"), TIMEOUT, "the upgrade to start")
    # Let the rollout reach two upgrade domains (web-0, web-5, then web-1, web-6).
    wait_for(lambda: len(on_revision(kube, namespace, second)) >= 4, TIMEOUT, "two domains updated")
    before = identities(kube, namespace)
    claims_before = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }
    updated = {n for n, (_, revision, _) in before.items() if revision == second}
    assert updated == {"web-0", "web-5", "web-1", "web-6"}
    phases: set[str] = set()
    with PodSampler(kube, namespace, "web") as sampler:
        annotate(kube, namespace, ANNOTATION_ROLLBACK)
        while not rolled_back(kube, namespace):
            phases.add(upgrade_of(kube, namespace).get("phase", ""))
            time.sleep(0.05)
            assert time.monotonic() - sampler.samples[0].at < TIMEOUT, "the rollback did not finish"
    upgrade = upgrade_of(kube, namespace)
    assert "RollingBack" in phases
    assert upgrade["history"][-1]["result"] == "RolledBack"
    assert upgrade["history"][-1]["toRevision"] == second
    assert upgrade["rolledBackRevision"] == second
    assert upgrade["lastAction"]["result"] == "Accepted"
    assert ANNOTATION_ROLLBACK not in annotations(kube, namespace)
    after = identities(kube, namespace)
    assert {n for n, (_, revision, _) in after.items() if revision != first} == set()
    for name, identity in before.items():
        if name not in updated:
            assert after[name] == identity, f"{name} was never updated and must be left alone"
    claims_after = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }
    assert claims_after == claims_before, "no data disk is replaced by a rollback"
    # Upgrade domain 1 went back before upgrade domain 0, and never more than one batch was down.
    back = sampler.first_seen_on(first)
    went_back = {n: t for n, t in back.items() if n in updated and t > sampler.samples[0].at}
    assert max(went_back[n] for n in ("web-1", "web-6")) <= min(went_back[n] for n in ("web-0", "web-5"))
    assert sampler.max_unavailable(10) <= 2
    events = reasons(kube, namespace)
    assert ("Warning", "RollbackStarted") in events
    assert ("Normal", "RollbackCompleted") in events


def test_a_rolled_back_revision_is_not_tried_again_until_the_template_changes(
    kube: Kube, namespace: str
) -> None:
    create(
        kube,
        namespace,
        policy_body(
            "breach",
            rollingUpgrade={"rollbackFailedInstancesOnPolicyBreach": True},
            healthCheck={"instanceStartTimeout": "2s"},
        ),
    )
    create(kube, namespace, scaleset_body("web", 5, policy="breach"))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
        "currentRevision"
    ]
    untouched = identities(kube, namespace)
    set_image(kube, namespace, "web", f"{IMAGE}:v2-never-ready")
    upgrade = wait_for(lambda: rolled_back(kube, namespace), TIMEOUT, "the policy to roll the upgrade back")
    bad = upgrade["rolledBackRevision"]
    assert upgrade["history"][-1]["result"] == "RolledBack"
    wait_for(lambda: len(on_revision(kube, namespace, first)) == 5, TIMEOUT, "every instance back")
    scaleset = get(kube, namespace)
    ready, stall = condition(scaleset, "Ready"), condition(scaleset, "Stalled")
    assert ready and ready["status"] == "False" and ready["reason"] == "RolledBack"
    assert stall and stall["status"] == "True" and stall["reason"] == "RolledBack"
    assert bad in stall["message"] and "change spec.template" in stall["message"]
    # The template still asks for the bad revision (a GitOps tool keeps it): nothing moves again.
    time.sleep(3)
    assert on_revision(kube, namespace, first) == set(untouched)
    assert upgrade_of(kube, namespace).get("locked") is False
    started = [r for _, r in reasons(kube, namespace) if r == "UpgradeStarted"]
    assert len(started) == 1, "the rolled-back revision was tried again"
    # A different template starts a new upgrade as usual.
    set_image(kube, namespace, "web", f"{IMAGE}:v3")
    done = wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web")) and s["status"]["currentRevision"] != first and s
        ),
        TIMEOUT,
        "the new template rolled out",
    )
    assert done["status"]["upgrade"].get("rolledBackRevision") is None
    assert not stalled(kube, namespace, "web")


def test_instance_start_timeout_with_rollback_rolls_the_batch_back(kube: Kube, namespace: str) -> None:
    create(
        kube,
        namespace,
        policy_body("rb", healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Rollback"}),
    )
    create(kube, namespace, scaleset_body("web", 10, policy="rb"))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
        "currentRevision"
    ]
    set_image(kube, namespace, "web", f"{IMAGE}:v2-crashloop")
    wait_for(lambda: rolled_back(kube, namespace), TIMEOUT, "the start timeout to roll back")
    wait_for(lambda: len(on_revision(kube, namespace, first)) == 10, TIMEOUT, "every instance back")
    assert ("Warning", "RollbackStarted") in reasons(kube, namespace)


def test_rollback_without_an_upgrade_in_progress_is_refused_and_touches_nothing(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, scaleset_body("web", 4))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    before = identities(kube, namespace)
    annotate(kube, namespace, ANNOTATION_ROLLBACK)
    wait_for(
        lambda: ANNOTATION_ROLLBACK not in annotations(kube, namespace), TIMEOUT, "the annotation consumed"
    )
    action = upgrade_of(kube, namespace)["lastAction"]
    assert action["result"] == "Refused" and action["reason"] == "RollbackNotAllowed"
    assert "apply the previous template as a new update" in action["message"]
    assert ("Warning", "RollbackNotAllowed") in reasons(kube, namespace)
    time.sleep(0.5)
    assert identities(kube, namespace) == before


def test_rollback_that_would_shrink_a_temp_disk_is_refused(kube: Kube, namespace: str) -> None:
    create(
        kube,
        namespace,
        policy_body("strict", healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Pause"}),
    )
    body = scaleset_body("web", 5, policy="strict")
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}]
    create(kube, namespace, body)
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    template = get(kube, namespace)["spec"]["template"]
    template["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = "2Gi"
    template["spec"]["containers"][0]["image"] = f"{IMAGE}:v2-never-ready"
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"template": template}}, MERGE_PATCH)
    wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "the upgrade to stall")
    before = identities(kube, namespace)
    annotate(kube, namespace, ANNOTATION_ROLLBACK)
    wait_for(
        lambda: ANNOTATION_ROLLBACK not in annotations(kube, namespace), TIMEOUT, "the annotation consumed"
    )
    action = upgrade_of(kube, namespace)["lastAction"]
    assert action["result"] == "Refused" and action["reason"] == "RollbackWouldShrink"
    assert "sizeLimit from 2Gi to 1Gi" in action["message"]
    time.sleep(0.5)
    assert identities(kube, namespace) == before
    assert upgrade_of(kube, namespace)["phase"] != "RollingBack"


def test_stuck_upgrade_names_the_failing_instances_and_both_remedies(kube: Kube, namespace: str) -> None:
    create(kube, namespace, policy_body("quick", healthCheck={"instanceStartTimeout": "2s"}))
    create(kube, namespace, scaleset_body("web", 10, policy="quick"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", f"{IMAGE}:v2-pull-error")
        report = wait_for(lambda: stalled(kube, namespace, "web"), TIMEOUT, "Stalled")
        assert report["reason"] == "TooManyUnhealthyUpgraded"
        failing = sorted(
            n
            for n, (_, rev, _) in identities(kube, namespace).items()
            if "web-" in n and rev == get(kube, namespace)["status"]["updateRevision"]
        )
        for name in failing:
            assert name in report["message"]
        assert "roll back" in report["message"] and "newer template" in report["message"]
        assert "scaleset rollback web" in report["message"]
        # A newer template repairs the stuck batches without taking more than one more batch down.
        set_image(kube, namespace, "web", f"{IMAGE}:v3")
        wait_for(
            lambda: (s := scaleset_ready(kube, namespace, "web")) and s["status"]["updatedReplicas"] == 10,
            TIMEOUT,
            "the newer template to repair the fleet",
        )
    assert sampler.max_unavailable(10) <= len(failing) + 2


def test_restart_recreates_every_instance_domain_by_domain_keeping_disks(kube: Kube, namespace: str) -> None:
    create(kube, namespace, scaleset_body("web", 10, claims=True))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    before = identities(kube, namespace)
    claims = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }
    with PodSampler(kube, namespace, "web") as sampler:
        annotate(kube, namespace, ANNOTATION_RESTART)
        wait_for(
            lambda: (
                (u := upgrade_of(kube, namespace)).get("history")
                and u["history"][-1]["result"] == "Restarted"
            ),
            TIMEOUT,
            "the restart to finish",
        )
        wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready again")
    after = identities(kube, namespace)
    assert set(after) == set(before)
    assert all(after[n][0] != before[n][0] for n in before), "every instance is recreated once"
    assert all(after[n][1] == before[n][1] for n in before), "a restart keeps each instance's revision"
    assert {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    } == claims
    assert sampler.max_unavailable(10) <= 2
    # Upgrade domains in ascending order: the uid of domain d changed before that of domain d + 1.
    changed: dict[str, float] = {}
    for sample in sampler.samples:
        for name, (_, _, uid) in sample.pods.items():
            if uid != before[name][0] and name not in changed:
                changed[name] = sample.at
    by_domain = [max(changed[f"web-{o}"] for o in range(d, 10, 5)) for d in range(5)]
    assert by_domain == sorted(by_domain)
    events = reasons(kube, namespace)
    assert ("Normal", "RestartStarted") in events and ("Normal", "RestartCompleted") in events
    assert ANNOTATION_RESTART not in annotations(kube, namespace)


def test_restart_is_refused_while_an_upgrade_runs_and_a_second_action_while_one_runs(
    kube: Kube, namespace: str
) -> None:
    create(kube, namespace, policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "4s"}))
    create(kube, namespace, scaleset_body("web", 10, policy="slow"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(lambda: upgrade_of(kube, namespace).get("locked"), TIMEOUT, "the upgrade to start")
    annotate(kube, namespace, ANNOTATION_RESTART)
    wait_for(lambda: ANNOTATION_RESTART not in annotations(kube, namespace), TIMEOUT, "restart consumed")
    assert upgrade_of(kube, namespace)["lastAction"]["reason"] == "RestartNotAllowed"

    wait_for(lambda: upgrade_of(kube, namespace).get("rollbackAllowed"), TIMEOUT, "rollbackAllowed")
    annotate(kube, namespace, ANNOTATION_ROLLBACK)
    wait_for(
        lambda: upgrade_of(kube, namespace).get("phase") == "RollingBack", TIMEOUT, "the rollback to run"
    )
    assert upgrade_of(kube, namespace)["rollbackAllowed"] is False
    annotate(kube, namespace, ANNOTATION_RESTART)
    wait_for(lambda: ANNOTATION_RESTART not in annotations(kube, namespace), TIMEOUT, "restart consumed")
    action = upgrade_of(kube, namespace)["lastAction"]
    assert action["action"] == "Restart" and action["reason"] == "ActionInProgress"
    wait_for(lambda: rolled_back(kube, namespace), TIMEOUT, "the rollback to finish")


def test_the_cli_asks_for_a_rollback_and_reports_the_answer(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    create(kube, namespace, policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "4s"}))
    create(kube, namespace, scaleset_body("web", 10, policy="slow"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    runner = CliRunner()
    args = ["-n", namespace, "--kubeconfig", kubeconfig, "--timeout", "20"]
    refused = runner.invoke(app, ["rollback", "web", *args])
    assert refused.exit_code == 1, refused.output
    assert "Refused: No upgrade is in progress" in refused.output

    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(lambda: upgrade_of(kube, namespace).get("rollbackAllowed"), TIMEOUT, "rollbackAllowed")
    accepted = runner.invoke(app, ["rollback", "web", *args])
    assert accepted.exit_code == 0, accepted.output
    assert "Accepted: Rolling back from" in accepted.output
    wait_for(lambda: rolled_back(kube, namespace), TIMEOUT, "the rollback to finish")

    missing = runner.invoke(app, ["restart", "nope", *args])
    assert missing.exit_code == 2
    assert 'ScaleSet "nope" not found' in missing.output


# --------------------------------------------------------------------------- the last batch, one instance


def test_a_start_timeout_in_the_last_batch_rolls_the_upgrade_back(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    # An upgrade is in progress until its last batch has passed its health gate. web-4, alone in the
    # last upgrade domain, never becomes ready: every instance is on the new revision by then, and
    # onInstanceStartTimeout: Rollback still rolls the upgrade back.
    create(
        kube,
        namespace,
        policy_body(
            "rb",
            rollingUpgrade={"maxUnhealthyInstancePercent": 40},
            healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Rollback"},
        ),
    )
    create(kube, namespace, scaleset_body("web", 5, policy="rb"))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
        "currentRevision"
    ]
    kubelet.set_behaviour(namespace, "web-4", "never-ready")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    second = wait_for(lambda: upgrade_of(kube, namespace).get("toRevision"), TIMEOUT, "the upgrade to start")
    wait_for(
        lambda: upgrade_of(kube, namespace).get("phase") == "RollingBack", TIMEOUT, "the rollback to start"
    )
    # web-4 went last, and the rollback started once every instance was on the new revision.
    assert [r for _, r in reasons(kube, namespace)].count("BatchStarted") >= 5
    rollback = upgrade_of(kube, namespace)["rollback"]
    assert (rollback["fromRevision"], rollback["toRevision"]) == (second, first)
    assert rollback["reason"] == "RollbackRequired"
    kubelet.set_behaviour(namespace, "web-4", None)  # back on the old revision it starts again
    wait_for(lambda: rolled_back(kube, namespace), TIMEOUT, "the rollback to finish")
    wait_for(lambda: len(on_revision(kube, namespace, first)) == 5, TIMEOUT, "every instance back")


def test_a_single_instance_upgrade_rolls_back_on_its_start_timeout(kube: Kube, namespace: str) -> None:
    create(
        kube,
        namespace,
        policy_body("rb", healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Rollback"}),
    )
    create(kube, namespace, scaleset_body("solo", 1, policy="rb"))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "solo"), TIMEOUT, "solo Ready")["status"][
        "currentRevision"
    ]
    set_image(kube, namespace, "solo", f"{IMAGE}:v2-never-ready")
    upgrade = wait_for(lambda: rolled_back(kube, namespace, "solo"), TIMEOUT, "the rollback to finish")
    assert upgrade["history"][-1]["result"] == "RolledBack"
    assert ("Warning", "RollbackStarted") in reasons(kube, namespace, "solo")
    back = wait_for(
        lambda: (pods := pods_of(kube, namespace, "solo")) and is_ready(pods[0]) and pods[0],
        TIMEOUT,
        "solo-0 Ready on the old revision",
    )
    assert back["metadata"]["labels"][LABEL_REVISION] == first
    assert back["spec"]["containers"][0]["image"] == f"{IMAGE}:v1"


def test_the_rollback_annotation_is_accepted_while_the_one_instance_has_not_passed_its_gate(
    kube: Kube, namespace: str
) -> None:
    create(
        kube,
        namespace,
        policy_body("strict", healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Pause"}),
    )
    create(kube, namespace, scaleset_body("solo", 1, policy="strict"))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "solo"), TIMEOUT, "solo Ready")["status"][
        "currentRevision"
    ]
    set_image(kube, namespace, "solo", f"{IMAGE}:v2-never-ready")
    report = wait_for(lambda: stalled(kube, namespace, "solo"), TIMEOUT, "Stalled")
    assert report["reason"] == "InstanceStartTimeout"
    # Its only instance is on the new revision, and the upgrade is still in progress.
    assert on_revision(kube, namespace, first, "solo") == set()
    assert upgrade_of(kube, namespace, "solo")["rollbackAllowed"] is True
    annotate(kube, namespace, ANNOTATION_ROLLBACK, "solo")
    wait_for(lambda: rolled_back(kube, namespace, "solo"), TIMEOUT, "the rollback to finish")
    assert upgrade_of(kube, namespace, "solo")["lastAction"]["result"] == "Accepted"
    wait_for(lambda: on_revision(kube, namespace, first, "solo") == {"solo-0"}, TIMEOUT, "solo-0 back")


# --------------------------------------------------------------------------- rollbackFailedInstancesOnPolicyBreach


def test_a_breach_rolls_back_the_failed_instances_only_and_keeps_the_healthy_upgraded_ones(
    kube: Kube, namespace: str, kubelet: Any
) -> None:
    # "Rollback failed instances to previous model if the rolling upgrade policy is violated": web-5
    # fails on the new revision (1 of the 2 upgraded, past 20 %); it goes back, web-0 (healthy on the
    # new revision) stays, and the six instances never updated are left alone.
    create(
        kube,
        namespace,
        policy_body(
            "breach",
            rollingUpgrade={"rollbackFailedInstancesOnPolicyBreach": True},
            healthCheck={"instanceStartTimeout": "2s"},
        ),
    )
    create(kube, namespace, scaleset_body("web", 10, policy="breach"))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
        "currentRevision"
    ]
    never_ready(kube, namespace, kubelet, "web-5")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    second = wait_for(lambda: upgrade_of(kube, namespace).get("toRevision"), TIMEOUT, "the upgrade to start")
    rollback = wait_for(
        lambda: upgrade_of(kube, namespace).get("rollback"), TIMEOUT, "the policy to start a rollback"
    )
    assert rollback["instances"] == ["web-5"]
    assert rollback["reason"] == "TooManyUnhealthyUpgraded"
    kubelet.set_behaviour(namespace, "web-5", None)
    upgrade = wait_for(lambda: rolled_back(kube, namespace), TIMEOUT, "the rollback to finish")
    assert upgrade["rolledBackRevision"] == second
    kept = identities(kube, namespace)
    assert on_revision(kube, namespace, second) == {"web-0"}
    assert on_revision(kube, namespace, first) == {f"web-{o}" for o in range(1, 10)}
    stall = condition(get(kube, namespace), "Stalled")
    assert stall and stall["reason"] == "RolledBack" and "web-0 stay on" in stall["message"]
    # Held while the template asks for the rolled-back revision: web-0 is not moved either way.
    time.sleep(2)
    assert identities(kube, namespace) == kept
    # A newer template moves every instance on, web-0 included.
    set_image(kube, namespace, "web", f"{IMAGE}:v3")
    done = wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] not in (first, second)
            and s
        ),
        TIMEOUT,
        "the newer template rolled out",
    )
    assert done["status"]["updatedReplicas"] == 10
