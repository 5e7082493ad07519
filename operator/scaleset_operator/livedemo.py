"""The live part of the demo: kubesim, the operator, the examples; a rollout walking the domains, then
an OS image published in a catalog that the fleet takes by itself once its maintenance window opens."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, core_path, fleet_path
from scaleset_operator.control.snapshot import runs_its_images
from scaleset_operator.identity import (
    LABEL_ORDINAL,
    LABEL_REVISION,
    LABEL_SCALESET,
    LABEL_SURGE,
    LABEL_UPGRADE_DOMAIN,
)

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "demo"
NEW_IMAGE = "nginx:1.28"
# The second scene: a publisher releases this version of the OS image; the fleet takes it by itself.
PUBLISHED = "1.28.1"
# The example policy pauses 10 s between batches and wants 10 s of stable readiness; the demo keeps
# the policy's shape but shortens both so the whole walk fits in well under a minute.
DEMO_NOTICE = "1s"
DEMO_TIMINGS = {
    "rollingUpgrade": {"pauseTimeBetweenBatches": "1s"},
    "healthCheck": {"stabilizationPeriod": "1s"},
}


def _pods(kube: Kube) -> list[dict[str, Any]]:
    return kube.list(core_path("pods", NAMESPACE), f"{LABEL_SCALESET}=web")


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _domain_view(pods: list[dict[str, Any]], update_revision: str, domains: int) -> str:
    """One line per UD: ● on the new revision and ready, ◐ new but not ready, ○ old and ready, x down."""
    rows = []
    for index in range(domains):
        members = sorted(
            (
                p
                for p in pods
                if (p["metadata"].get("labels") or {}).get(LABEL_UPGRADE_DOMAIN) == str(index)
                and (p["metadata"].get("labels") or {}).get(LABEL_SURGE) != "true"
            ),
            key=lambda p: int((p["metadata"].get("labels") or {}).get(LABEL_ORDINAL, 0)),
        )
        cells = []
        for pod in members:
            new = (pod["metadata"].get("labels") or {}).get(LABEL_REVISION) == update_revision
            ready = _ready(pod) and runs_its_images(pod)
            cells.append("●" if new and ready else "◐" if new else "○" if ready else "x")
        rows.append(f"UD{index} {' '.join(cells)}")
    return "   ".join(rows)


def _apply(kube: Kube, path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        plural = {"ScaleSet": "scalesets", "UpgradePolicy": "upgradepolicies"}.get(document["kind"])
        if plural is None:
            continue
        if document["kind"] == "UpgradePolicy":
            for key, value in DEMO_TIMINGS.items():
                document.setdefault("spec", {}).setdefault(key, {}).update(value)
        if document["kind"] == "ScaleSet" and (document["spec"].get("scheduledEvents") or {}).get("enabled"):
            # Each batch is announced to its instances first; nobody approves here, so the notice runs out.
            document["spec"]["scheduledEvents"]["notBeforeTimeout"] = DEMO_NOTICE
        kube.create(fleet_path(plural, NAMESPACE), document)


def _install_crds(kube: Kube) -> None:
    for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
        try:
            kube.create(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                yaml.safe_load(crd_file.read_text()),
            )
        except ApiError as error:
            if error.status != 409:
                raise


def _wait(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError


def run(out: TextIO = sys.stdout, timeout: float = 180.0) -> int:
    from kubesim.cluster import ThreadedCluster
    from scaleset_operator.runner import OperatorThread

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="scaleset-demo-") as scratch:
        kubeconfig = str(Path(scratch) / "kubeconfig")
        with ThreadedCluster(nodes=3, time_scale=10.0, kubeconfig_path=kubeconfig) as cluster:
            say(f"kubesim is up at {cluster.url} (3 simulated nodes); KUBECONFIG={kubeconfig}")
            kube = Kube.from_kubeconfig(kubeconfig)
            _install_crds(kube)
            kube.create(
                core_path("namespaces"),
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            )
            with OperatorThread(kubeconfig, resync_seconds=5.0):
                say("the operator is running")
                _apply(kube, ROOT / "examples" / "upgradepolicy.yaml")
                _apply(kube, ROOT / "examples" / "scaleset.yaml")
                say(
                    "applied examples/upgradepolicy.yaml and examples/scaleset.yaml (pauses and scheduled-event notices shortened to 1s)"
                )
                scaleset = _wait(lambda: _is_ready(kube), timeout)
                domains = scaleset["spec"]["upgradeDomainCount"]
                old = scaleset["status"]["currentRevision"]
                say(f"web: {scaleset['status']['readyReplicas']} instances ready on {old}")
                say(_domain_view(_pods(kube), old, domains))
                say(f"changing the image to {NEW_IMAGE}: ● upgraded, ◐ upgrading, ○ not yet, x down")
                containers = scaleset["spec"]["template"]["spec"]["containers"]
                containers[0]["image"] = NEW_IMAGE
                kube.patch(
                    fleet_path("scalesets", NAMESPACE, "web"),
                    {"spec": {"template": {"spec": {"containers": containers}}}},
                    MERGE_PATCH,
                )
                new = _follow(kube, old, domains, timeout, say)
                if new is None:
                    return 1
                batches = sum(
                    1 for e in kube.list(core_path("events", NAMESPACE)) if e.get("reason") == "BatchStarted"
                )
                say(
                    f"rollout complete: 14 instances on {new}, {batches} batches, one upgrade domain at a time"
                )
                if not _automatic_scene(kube, new, domains, timeout, say):
                    return 1
    return 0


def _follow(kube: Kube, old: str, domains: int, timeout: float, say: Any) -> str | None:
    """Draw the walk from revision `old` until every instance is ready on the new one; its name, or None."""
    # Draw against the new revision only once the operator has named it in status.
    _wait(
        lambda: (
            (kube.get(fleet_path("scalesets", NAMESPACE, "web")).get("status") or {}).get("updateRevision")
            not in (None, old)
        ),
        timeout,
    )
    last = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = kube.get(fleet_path("scalesets", NAMESPACE, "web"))
        status = current.get("status") or {}
        upgrade = status.get("upgrade") or {}
        new = status.get("updateRevision") or ""
        view = _domain_view(_pods(kube), new, domains)
        line = f"{upgrade.get('phase', 'Idle'):<15} {view}"
        if line != last:
            say(line)
            last = line
        if new != old and status.get("currentRevision") == new and _is_ready(kube):
            return str(new)
        time.sleep(0.05)
    say("the rollout did not finish in time")
    return None


def _automatic_scene(kube: Kube, old: str, domains: int, timeout: float, say: Any) -> bool:
    """A new OS image is published; an OSImage window holds it until the window opens; the fleet
    then upgrades itself, upgrade domain by upgrade domain, with spec.template untouched."""
    window = next(yaml.safe_load_all((ROOT / "examples" / "maintenanceconfiguration.yaml").read_text()))
    kube.create(fleet_path("maintenanceconfigurations"), window)
    kube.patch(
        fleet_path("scalesets", NAMESPACE, "web"),
        {"metadata": {"labels": {"maintenance": "weekend"}}},
        MERGE_PATCH,
    )
    now = datetime.now(UTC)
    published = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.create(
        fleet_path("imagecatalogs"),
        {
            "apiVersion": "fleet.scaleset.dev/v1alpha1",
            "kind": "ImageCatalog",
            "metadata": {"name": "nginx"},
            "spec": {
                "images": [
                    {
                        "repository": "nginx",
                        "versions": [
                            {"version": "1.28", "publishedAt": "2025-04-23T00:00:00Z"},
                            {"version": PUBLISHED, "publishedAt": published},
                        ],
                    }
                ]
            },
        },
    )
    say(
        f"an ImageCatalog publishes nginx {PUBLISHED}; the policy has automaticOSUpgrade, and web is "
        f"labelled maintenance=weekend, so examples/maintenanceconfiguration.yaml's OSImage window applies"
    )

    def waiting() -> str | None:
        status = kube.get(fleet_path("scalesets", NAMESPACE, "web")).get("status") or {}
        for update in status.get("pendingUpdates") or []:
            if update.get("version") == PUBLISHED and update.get("waitingFor"):
                return str(update["waitingFor"])
        return None

    say(f"pending: OSImage nginx {PUBLISHED}. {_wait(waiting, timeout)}")
    say(_domain_view(_pods(kube), old, domains))
    # Saturday night does not come during a demo: the window is moved to the hour that has begun.
    opened = now.astimezone(UTC) - timedelta(minutes=30)
    kube.patch(
        fleet_path("maintenanceconfigurations", name=window["metadata"]["name"]),
        {
            "spec": {
                "window": {
                    "startDateTime": opened.strftime("%Y-%m-%d %H:%M"),
                    "timeZone": "UTC",
                    "recurEvery": "Day",
                }
            }
        },
        MERGE_PATCH,
    )
    say("the window opens (the demo moves it to now): the fleet upgrades itself")
    new = _follow(kube, old, domains, timeout, say)
    if new is None:
        return False
    scaleset = kube.get(fleet_path("scalesets", NAMESPACE, "web"))
    written = scaleset["spec"]["template"]["spec"]["containers"][0]["image"]
    chosen = (scaleset["status"].get("automaticUpdates") or {}).get("osImage") or {}
    say(
        f"automatic OS upgrade complete: 14 instances run {chosen.get('image')} on {new}; "
        f"spec.template still says {written} (status.automaticUpdates records the choice)"
    )
    return True


def _is_ready(kube: Kube) -> dict[str, Any] | None:
    scaleset = kube.get(fleet_path("scalesets", NAMESPACE, "web"))
    for condition in (scaleset.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "Ready"
            and condition.get("status") == "True"
            and scaleset["status"].get("observedGeneration") == scaleset["metadata"].get("generation")
        ):
            return scaleset
    return None


if __name__ == "__main__":
    sys.exit(run())
