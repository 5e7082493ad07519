"""What GitOps tools read from a ScaleSet, judged by their own code: kstatus (the Go library Flux, kpt
and cli-utils compute status with, built into tools/kstatus) and the Argo CD health script (Lua).

Every version of the ScaleSet, its pods and its Services is recorded through a rollout, a stall, a
rollback, a staged swap and a wait for a maintenance window. At every moment of the record (each
resourceVersion) the latest ScaleSet is judged as a tool polling then would judge it, and compared
with the world at that moment, read from the pods and Services alone: work remains until every
instance exists, is Ready and runs the revision the scenario ends on (in Staged mode: until the
Services select the new set). kstatus must say Current only at rest, Failed once the rollout is
stalled, InProgress otherwise; Argo CD Healthy only at rest, Degraded when stalled.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path
from scaleset_operator.identity import ANNOTATION_ROLLBACK, LABEL_REVISION, LABEL_SCALESET, LABEL_SLOT
from tests.integration.helpers import (
    IMAGE,
    ApiRecorder,
    create,
    is_ready,
    maintenance_configuration,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    stalled,
    wait_for,
)
from tests.unit.test_integrations import argocd_health
from tests.unit.test_kstatus import kstatus_of

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90


@pytest.fixture(scope="session")
def kstatus() -> Callable[[list[dict[str, Any]]], list[tuple[str, str]]]:
    return kstatus_of


class Recorder(ApiRecorder):
    """Every version of the namespace's pods, ScaleSets and Services, in resourceVersion order."""

    def listers(self) -> dict[str, Callable[..., Any]]:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.kube.api_client)
        return {
            **super().listers(),
            "Service": lambda **kw: core.list_namespaced_service(self.namespace, **kw),
        }

    def started(self) -> bool:
        return {kind for _, kind, _, _ in self.versions} >= {"Pod", "ScaleSet"}

    def moments(self, name: str) -> list[Moment]:
        """The world at each resourceVersion once the ScaleSet exists: its latest version, its pods, the
        Services' slot selectors."""
        pods: dict[str, dict[str, Any]] = {}
        services: dict[str, str | None] = {}
        scaleset: dict[str, Any] | None = None
        moments = []
        for rv, kind, change, obj in sorted(self.versions, key=lambda item: item[0]):
            labels = obj["metadata"].get("labels") or {}
            if kind == "Pod" and labels.get(LABEL_SCALESET) == name:
                if change == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj
            elif kind == "Service":
                services[obj["metadata"]["name"]] = ((obj.get("spec") or {}).get("selector") or {}).get(
                    LABEL_SLOT
                )
            elif kind == "ScaleSet" and obj["metadata"]["name"] == name:
                scaleset = obj
            if scaleset is not None:
                moments.append(Moment(rv, scaleset, list(pods.values()), dict(services)))
        return moments


@dataclass
class Moment:
    rv: int
    scaleset: dict[str, Any]
    pods: list[dict[str, Any]]
    services: dict[str, str | None]  # Service -> the slot its selector names


def at_rest(moment: Moment, revision: str, slot: str | None = None) -> bool:
    """The pods (of `slot`, selected by every Service, in Staged mode) are all there, Ready, on `revision`,
    and the operator has seen the latest spec (what the spec asks is what runs)."""
    scaleset = moment.scaleset
    observed = (scaleset.get("status") or {}).get("observedGeneration")
    pods = [
        p for p in moment.pods if slot is None or (p["metadata"].get("labels") or {}).get(LABEL_SLOT) == slot
    ]
    return (
        observed == scaleset["metadata"]["generation"]
        and len(pods) == scaleset["spec"]["replicas"]
        and all(is_ready(p) and p["metadata"]["labels"].get(LABEL_REVISION) == revision for p in pods)
        and (slot is None or all(selected == slot for selected in moment.services.values()))
    )


def generation(moment: Moment) -> int:
    return int(moment.scaleset["metadata"]["generation"])


def verdicts(moments: list[Moment], kstatus: Callable[..., list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return kstatus([m.scaleset for m in moments])


def assert_current_only_at_rest(
    moments: list[Moment], judged: list[tuple[str, str]], rest: Callable[[Moment], bool]
) -> None:
    for moment, (status, message) in zip(moments, judged, strict=True):
        if status == "Current":
            assert rest(moment), (
                f"kstatus said Current ({message}) at resourceVersion {moment.rv} while work remained: "
                f"{summary(moment)}"
            )
        health, why = argocd_health(moment.scaleset)
        if health == "Healthy":
            assert rest(moment), f"Argo CD said Healthy ({why}) at {moment.rv}: {summary(moment)}"


def summary(moment: Moment) -> str:
    status = moment.scaleset.get("status") or {}
    pods = {
        p["metadata"]["name"]: (p["metadata"]["labels"].get(LABEL_REVISION), is_ready(p)) for p in moment.pods
    }
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}
    return f"conditions {conditions}, upgrade {status.get('upgrade', {}).get('phase')}, pods {pods}"


def revision_of(kube: Kube, namespace: str) -> str:
    return str(kube.get(fleet_path("scalesets", namespace, "web"))["status"]["currentRevision"])


def recorded(kube: Kube, namespace: str, change: Callable[[], Any], done: Callable[[], Any]) -> list[Moment]:
    with Recorder(kube, namespace) as recorder:
        change()
        wait_for(done, TIMEOUT, "the scenario's end")
        # The watches deliver what happened up to here before the record is closed.
        final = kube.get(fleet_path("scalesets", namespace, "web"))["metadata"]["resourceVersion"]
        wait_for(
            lambda: any(
                kind == "ScaleSet" and rv >= int(final) for rv, kind, _, _ in list(recorder.versions)
            ),
            10,
            "the last version recorded",
        )
    return recorder.moments("web")


def test_a_rollout_is_in_progress_until_every_instance_runs_the_new_revision(
    kube: Kube, namespace: str, kstatus: Callable[..., list[tuple[str, str]]]
) -> None:
    create(
        kube,
        namespace,
        policy_body(
            "halves", rollingUpgrade={"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}
        ),
    )
    create(kube, namespace, scaleset_body("web", 4, policy="halves", upgrade_domain_count=2))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    first = revision_of(kube, namespace)
    assert kstatus([kube.get(fleet_path("scalesets", namespace, "web"))])[0][0] == "Current"

    def done() -> Any:
        ready = scaleset_ready(kube, namespace, "web")
        return ready and ready["status"]["currentRevision"] != first

    moments = recorded(kube, namespace, lambda: set_image(kube, namespace, "web", f"{IMAGE}:v2"), done)
    second = revision_of(kube, namespace)
    judged = verdicts(moments, kstatus)
    assert_current_only_at_rest(
        moments, judged, lambda m: at_rest(m, first if generation(m) == 1 else second)
    )
    changed = next(i for i, m in enumerate(moments) if m.scaleset["metadata"]["generation"] > 1)
    assert {status for status, _ in judged[changed:-1]} >= {"InProgress"}
    assert judged[-1][0] == "Current"
    assert argocd_health(moments[-1].scaleset)[0] == "Healthy"


def test_a_stalled_rollout_is_failed_and_never_current(
    kube: Kube, namespace: str, kstatus: Callable[..., list[tuple[str, str]]]
) -> None:
    create(
        kube,
        namespace,
        policy_body("strict", healthCheck={"instanceStartTimeout": "2s", "onInstanceStartTimeout": "Pause"}),
    )
    create(kube, namespace, scaleset_body("web", 4, policy="strict", upgrade_domain_count=2))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    moments = recorded(
        kube,
        namespace,
        lambda: set_image(kube, namespace, "web", f"{IMAGE}:v2-never-ready"),
        lambda: stalled(kube, namespace, "web"),
    )
    judged = verdicts(moments, kstatus)
    changed = next(i for i, m in enumerate(moments) if m.scaleset["metadata"]["generation"] > 1)
    after = [status for status, _ in judged[changed:]]
    assert "Current" not in after, judged[changed:]
    assert after[-1] == "Failed"
    # Once stalled it stays so: nothing flips back to InProgress while nothing changes.
    assert after[after.index("Failed") :] == ["Failed"] * (len(after) - after.index("Failed"))
    assert "InProgress" in after[: after.index("Failed")]
    assert argocd_health(moments[-1].scaleset)[0] == "Degraded"


def test_a_rollback_is_in_progress_then_failed_until_the_template_is_reverted(
    kube: Kube, namespace: str, kstatus: Callable[..., list[tuple[str, str]]]
) -> None:
    create(kube, namespace, policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "2s"}))
    create(kube, namespace, scaleset_body("web", 6, policy="slow", upgrade_domain_count=3))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    first = revision_of(kube, namespace)
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(
        lambda: any(
            p["metadata"]["labels"].get(LABEL_REVISION) != first
            for p in kube.list(core_path("pods", namespace), f"{LABEL_SCALESET}=web")
        ),
        TIMEOUT,
        "a first batch on v2",
    )

    def rolled_back() -> Any:
        upgrade = (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
            "upgrade"
        ) or {}
        return upgrade.get("rolledBackRevision") and not upgrade.get("locked")

    path = fleet_path("scalesets", namespace, "web")
    moments = recorded(
        kube,
        namespace,
        lambda: kube.patch(path, {"metadata": {"annotations": {ANNOTATION_ROLLBACK: "true"}}}, MERGE_PATCH),
        rolled_back,
    )
    judged = verdicts(moments, kstatus)
    # The spec still asks for v2, which is not what runs: never Current, Failed once rolled back.
    assert "Current" not in {status for status, _ in judged}, judged
    assert "InProgress" in {status for status, _ in judged}
    wait_for(lambda: kstatus([kube.get(path)])[0][0] == "Failed", TIMEOUT, "Failed once rolled back")
    assert argocd_health(kube.get(path))[0] == "Degraded"

    # Reverting the template in Git brings the ScaleSet back to Current, with no instance touched.
    moments = recorded(
        kube,
        namespace,
        lambda: set_image(kube, namespace, "web", f"{IMAGE}:v1"),
        lambda: scaleset_ready(kube, namespace, "web"),
    )
    judged = verdicts(moments, kstatus)
    assert_current_only_at_rest(
        moments,
        judged,
        lambda m: (
            at_rest(m, first)
            and m.scaleset["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1")
        ),
    )
    assert judged[-1][0] == "Current"


def test_a_staged_swap_is_in_progress_until_the_services_select_the_new_set(
    kube: Kube, namespace: str, kstatus: Callable[..., list[tuple[str, str]]]
) -> None:
    kube.create(
        core_path("services", namespace),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    create(kube, namespace, policy_body("staged", mode="Staged"))
    create(kube, namespace, scaleset_body("web", 2, policy="staged"))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    first = revision_of(kube, namespace)

    def swapped() -> Any:
        ready = scaleset_ready(kube, namespace, "web")
        return ready and ready["status"].get("staged", {}).get("production") == "green"

    moments = recorded(kube, namespace, lambda: set_image(kube, namespace, "web", f"{IMAGE}:v2"), swapped)
    second = revision_of(kube, namespace)
    judged = verdicts(moments, kstatus)
    assert_current_only_at_rest(
        moments,
        judged,
        lambda m: at_rest(m, first, slot="blue") if generation(m) == 1 else at_rest(m, second, slot="green"),
    )
    changed = next(i for i, m in enumerate(moments) if m.scaleset["metadata"]["generation"] > 1)
    assert "InProgress" in {status for status, _ in judged[changed:]}
    assert judged[-1][0] == "Current"


def test_a_rollout_held_by_a_closed_window_is_in_progress(
    kube: Kube, namespace: str, kstatus: Callable[..., list[tuple[str, str]]], configurations: list[str]
) -> None:
    name = f"gitops-{uuid.uuid4().hex[:8]}"
    repository = f"registry.example/{name}"
    published = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    catalog = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ImageCatalog",
        "metadata": {"name": name},
        "spec": {
            "images": [
                {"repository": repository, "versions": [{"version": "1.0.0", "publishedAt": published}]}
            ]
        },
    }
    kube.create(fleet_path("imagecatalogs"), catalog)
    try:
        closed = datetime.now(UTC) + timedelta(days=2)
        opened = datetime.now(UTC) - timedelta(hours=1)
        kube.create(
            fleet_path("maintenanceconfigurations"),
            maintenance_configuration(name, "OSImage", {"fleet": name}, opened),
        )
        configurations.append(name)
        create(
            kube,
            namespace,
            policy_body(
                "auto",
                rollingUpgrade={
                    "maxBatchInstancePercent": 50,
                    "maxUnhealthyInstancePercent": 50,
                    "pauseTimeBetweenBatches": "3s",
                },
                automaticOSUpgrade={"enabled": True},
            ),
        )
        body = scaleset_body("web", 4, image=f"{repository}:1.0.0", policy="auto", upgrade_domain_count=2)
        body["metadata"]["labels"] = {"fleet": name}
        create(kube, namespace, body)
        wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
        window = fleet_path("maintenanceconfigurations", name=name)
        scaleset = fleet_path("scalesets", namespace, "web")

        def publish() -> None:
            versions = [
                *catalog["spec"]["images"][0]["versions"],
                {"version": "1.1.0", "publishedAt": published},
            ]
            kube.patch(
                fleet_path("imagecatalogs", name=name),
                {"spec": {"images": [{"repository": repository, "versions": versions}]}},
            )

        def held() -> Any:
            upgrade = (kube.get(scaleset).get("status") or {}).get("upgrade") or {}
            if upgrade.get("currentBatch") and upgrade.get("phase") != "WaitingForMaintenanceWindow":
                # The first batch started in the open window; closing it holds the next one.
                kube.patch(window, {"spec": {"window": {"startDateTime": closed.strftime("%Y-%m-%d %H:%M")}}})
            return upgrade.get("phase") == "WaitingForMaintenanceWindow"

        moments = recorded(kube, namespace, publish, held)
        target = f"{repository}:1.1.0"
        judged = verdicts(moments, kstatus)
        # No spec changed (automatic work): the world is at rest only where no instance is being moved.
        assert_current_only_at_rest(
            moments, judged, lambda m: at_rest(m, moments[0].pods[0]["metadata"]["labels"][LABEL_REVISION])
        )
        assert judged[-1][0] == "InProgress", summary(moments[-1])
        assert argocd_health(moments[-1].scaleset)[0] == "Progressing"
        moved = [
            p
            for p in kube.list(core_path("pods", namespace), f"{LABEL_SCALESET}=web")
            if p["spec"]["containers"][0]["image"] == target
        ]
        assert 0 < len(moved) < 4

        kube.patch(window, {"spec": {"window": {"startDateTime": opened.strftime("%Y-%m-%d %H:%M")}}})
        wait_for(
            lambda: (
                (s := scaleset_ready(kube, namespace, "web"))
                and kstatus([s])[0][0] == "Current"
                and all(
                    p["spec"]["containers"][0]["image"] == target
                    for p in kube.list(core_path("pods", namespace), f"{LABEL_SCALESET}=web")
                )
            ),
            TIMEOUT,
            "Current once every instance runs 1.1.0",
        )
    finally:
        kube.delete(fleet_path("imagecatalogs", name=name))
