"""Helpers of the integration tests: bodies of custom resources, waiting, and sampling pods over a run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_REVISION, LABEL_SCALESET, LABEL_SURGE

# On kubesim any image "runs"; on kind, point this at an image loaded with tags v1, v2, v3 and v9.
IMAGE = os.environ.get("E2E_IMAGE_REPO", "registry.example/app")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def scaleset_body(
    name: str,
    replicas: int,
    image: str = f"{IMAGE}:v1",
    policy: str | None = None,
    upgrade_domain_count: int = 5,
    claims: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "os",
                    "image": image,
                    "readinessProbe": {
                        "exec": {"command": ["true"]},
                        "periodSeconds": 1,
                        "initialDelaySeconds": 1,
                    },
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }
    body: dict[str, Any] = {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "upgradeDomainCount": upgrade_domain_count,
            "template": template,
            **spec,
        },
    }
    if policy:
        body["spec"]["upgradePolicyRef"] = {"name": policy}
    if claims:
        body["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ]
    return body


def policy_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "UpgradePolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def pods_of(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = kube.list(core_path("pods", namespace), f"{LABEL_SCALESET}={name}")
    return [p for p in pods if (p["metadata"].get("labels") or {}).get(LABEL_SURGE) != "true"]


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return None


def scaleset_ready(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    obj = kube.get(fleet_path("scalesets", namespace, name))
    ready = condition(obj, "Ready")
    generation = obj["metadata"].get("generation")
    if (
        ready
        and ready["status"] == "True"
        and (obj.get("status") or {}).get("observedGeneration") == generation
    ):
        return obj
    return None


@dataclass
class Sample:
    at: float
    pods: dict[str, tuple[str | None, bool, str | None]]  # name -> (revision, ready, uid)


@dataclass
class PodSampler:
    """Samples the instances of one ScaleSet throughout a test, to check invariants over the whole run."""

    kube: Kube
    namespace: str
    name: str
    interval: float = 0.02
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PodSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pods = pods_of(self.kube, self.namespace, self.name)
            except ApiError:
                continue
            self.samples.append(
                Sample(
                    time.monotonic(),
                    {
                        p["metadata"]["name"]: (
                            (p["metadata"].get("labels") or {}).get(LABEL_REVISION),
                            is_ready(p),
                            p["metadata"].get("uid"),
                        )
                        for p in pods
                    },
                )
            )
            self._stop.wait(self.interval)

    def max_unavailable(self, replicas: int) -> int:
        return max(
            (replicas - sum(1 for _, ready, _ in s.pods.values() if ready) for s in self.samples), default=0
        )

    def first_seen_on(self, revision: str) -> dict[str, float]:
        """When each instance was first seen labelled with `revision`: the order the rollout touched them."""
        seen: dict[str, float] = {}
        for sample in self.samples:
            for name, (rev, _ready, _) in sample.pods.items():
                if rev == revision and name not in seen:
                    seen[name] = sample.at
        return seen


def create(kube: Kube, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    plural = {"ScaleSet": "scalesets", "UpgradePolicy": "upgradepolicies"}[body["kind"]]
    return kube.create(fleet_path(plural, namespace), body)


def set_image(kube: Kube, namespace: str, name: str, image: str) -> None:
    """Change only the image of the first container, as `kubectl set image` does."""
    scaleset = kube.get(fleet_path("scalesets", namespace, name))
    containers = scaleset["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = image
    kube.patch(
        fleet_path("scalesets", namespace, name),
        {"spec": {"template": {"spec": {"containers": containers}}}},
        MERGE_PATCH,
    )


def never_ready(kube: Kube, namespace: str, kubelet: Any, *names: str, scaleset: str = "web") -> None:
    """Make these instances (live pods on simulated nodes) stop being Ready, and wait until the API says so."""
    for name in names:
        kubelet.set_behaviour(namespace, name, "never-ready")
    wait_for(
        lambda: (
            set(names)
            <= {p["metadata"]["name"] for p in pods_of(kube, namespace, scaleset) if not is_ready(p)}
        ),
        60,
        f"{', '.join(names)} unready",
    )


def stalled(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The Stalled condition of a ScaleSet when it is True."""
    found = condition(kube.get(fleet_path("scalesets", namespace, name)), "Stalled")
    return found if found and found["status"] == "True" else None


def maintenance_configuration(
    name: str, scope: str, selector: dict[str, str], start: datetime, **spec: Any
) -> dict[str, Any]:
    """A MaintenanceConfiguration of `scope` for the ScaleSets labelled `selector`: two hours weekly from
    `start` (UTC); `spec` adds or replaces fields (maxDeferral, a window of another recurrence)."""
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "MaintenanceConfiguration",
        "metadata": {"name": name},
        "spec": {
            "maintenanceScope": scope,
            "window": {
                "startDateTime": start.strftime("%Y-%m-%d %H:%M"),
                "duration": "02:00",
                "timeZone": "UTC",
                "recurEvery": "Week",
            },
            "assignment": {"scaleSetSelector": {"matchLabels": selector}},
            **spec,
        },
    }


class Watcher:
    """Watches some kinds of a namespace on threads of its own until the `with` block ends, calling
    on_event(kind, type, object) for every event; a dropped watch resumes from the last version seen
    and an expired one lists again. Entering waits until `started()` (each watch opens with the
    objects as they are, so nothing that happens inside the block is missed)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def listers(self) -> dict[str, Callable[..., Any]]:
        """Kind -> the client's list call of that kind in the namespace (kubernetes.client)."""
        raise NotImplementedError

    def on_event(self, kind: str, change: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def started(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Any:
        for kind, lister in self.listers().items():
            thread = threading.Thread(target=self._follow, args=(kind, lister), daemon=True)
            thread.start()
            self._threads.append(thread)
        wait_for(self.started, 30, "the watches to start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _follow(self, kind: str, lister: Callable[..., Any]) -> None:
        import kubernetes

        version = None
        while not self._stop.is_set():
            try:
                for event in kubernetes.watch.Watch().stream(
                    lister, resource_version=version, timeout_seconds=2, _preload_content=False
                ):
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":  # expired: list again
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    self.on_event(kind, event["type"], obj)
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped watch resumes from the last version seen
                time.sleep(0.05)


class ApiRecorder(Watcher):
    """Keeps every version of a namespace's pods and ScaleSets, so that a test can replay both in
    resourceVersion order: what the pods were when each status was written."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(kube, namespace)
        self.versions: list[tuple[int, str, str, dict[str, Any]]] = []  # rv, kind, type, object

    def listers(self) -> dict[str, Callable[..., Any]]:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.kube.api_client)
        custom = kubernetes.client.CustomObjectsApi(self.kube.api_client)
        return {
            "Pod": lambda **kw: core.list_namespaced_pod(self.namespace, **kw),
            "ScaleSet": lambda **kw: custom.list_namespaced_custom_object(
                "fleet.scaleset.dev", "v1alpha1", self.namespace, "scalesets", **kw
            ),
        }

    def on_event(self, kind: str, change: str, obj: dict[str, Any]) -> None:
        self.versions.append((int(obj["metadata"]["resourceVersion"]), kind, change, obj))

    def started(self) -> bool:
        return {kind for _, kind, _, _ in self.versions} >= {"Pod", "ScaleSet"}

    def statuses_with_pods(self, name: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Each version of ScaleSet `name`, with its instance pods as they were at that resourceVersion."""
        pods: dict[str, dict[str, Any]] = {}
        result = []
        for _, kind, change, obj in sorted(self.versions, key=lambda item: item[0]):
            labels = obj["metadata"].get("labels") or {}
            if kind == "Pod" and labels.get(LABEL_SCALESET) == name and labels.get(LABEL_SURGE) != "true":
                if change == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj
            elif kind == "ScaleSet" and obj["metadata"]["name"] == name:
                result.append((obj, list(pods.values())))
        return result
