"""Crash and fault tolerance: an operator killed at random, an API server that fails requests, two operators.

These tests run on a kubesim cluster of their own: they inject faults into the API server and start
operators that must not meet the suite's shared one.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaleset_operator.control.kube import MERGE_PATCH, ApiError, Kube, core_path, fleet_path
from scaleset_operator.handlers.scalesets import transient
from scaleset_operator.identity import ANNOTATION_ROLLBACK, LABEL_ORDINAL, LABEL_REVISION, LABEL_SURGE
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import install_crds
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    create,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 120
# Simulated seconds before an instance of the new image is Ready: 3 real seconds at time scale 20.
SLOW = f"{IMAGE}:v2-ready-after-60s"
# 1.5 real seconds: ten batches of it outlast the ten kills (about 7 s at seed 7) at least twice over.
SLOW_BATCH = f"{IMAGE}:v2-ready-after-30s"


class RetryingKube(Kube):
    """The tests' own client on a faulty API server: retries what the faults break, as kubectl users do."""

    def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(50):
            try:
                return super().request(*args, **kwargs)
            except ApiError as error:
                if not transient(error) or attempt == 49:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        pytest.skip("injects faults into kubesim's API server and needs a cluster of its own")
    from kubesim.cluster import ThreadedCluster

    path = tmp_path_factory.mktemp("chaos") / "kubeconfig"
    with ThreadedCluster(nodes=3, time_scale=20.0, kubeconfig_path=str(path)) as running:
        yield running


@pytest.fixture(scope="module")
def kube(cluster: Any) -> Kube:
    client = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
    install_crds(client)
    retrying = RetryingKube(client.api_client)
    return retrying


@pytest.fixture
def namespace(kube: Kube) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


@pytest.fixture(autouse=True)
def no_faults_after(cluster: Any) -> Iterator[None]:
    yield
    cluster.faults.reset()


class OperatorProcess:
    """`scaleset operator` as a separate process, so that it can be killed with SIGKILL."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        command = shutil.which("scaleset", path=str(Path(sys.executable).parent))
        assert command, "the scaleset command is installed with the project"
        self.args = [
            command,
            "operator",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
            "--metrics-address=",
            "--scheduled-events-address=off",
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.kills += 1

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class OrdinalWatch:
    """Samples the ordinal labels of every pod of a ScaleSet: no ordinal may be held by two live pods."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.duplicates: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.kube.list(
                    core_path("pods", self.namespace), f"fleet.scaleset.dev/scaleset={self.name}"
                )
            except ApiError:
                continue
            live = [
                p
                for p in pods
                if not p["metadata"].get("deletionTimestamp")
                and p["metadata"]["labels"].get(LABEL_SURGE) != "true"
            ]
            counts = Counter(p["metadata"]["labels"].get(LABEL_ORDINAL) for p in live)
            twice = {k: v for k, v in counts.items() if v > 1}
            if twice:
                self.duplicates.append(twice)
            self._stop.wait(0.05)

    def __enter__(self) -> OrdinalWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def claim_uids(kube: Kube, namespace: str) -> dict[str, str]:
    return {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in kube.list(core_path("persistentvolumeclaims", namespace))
    }


def locked(kube: Kube, namespace: str) -> bool:
    status = kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}
    return bool((status.get("upgrade") or {}).get("locked"))


def on_revision(kube: Kube, namespace: str, revision: str) -> int:
    pods = kube.list(core_path("pods", namespace), "fleet.scaleset.dev/scaleset=web")
    return sum(1 for p in pods if p["metadata"]["labels"].get(LABEL_REVISION) == revision)


def kill_while(operator: OperatorProcess, running: Any, kills: int, seed: int) -> None:
    """SIGKILL the operator at random moments while `running()` holds, restarting it each time."""
    rng = random.Random(seed)
    deadline = time.monotonic() + TIMEOUT
    while operator.kills < kills and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.5))
        if not running():
            break
        operator.kill()
        operator.start()


def setup_fleet(kube: Kube, namespace: str, replicas: int = 30) -> str:
    create(kube, namespace, policy_body("tenth", rollingUpgrade={"maxBatchInstancePercent": 10}))
    create(kube, namespace, scaleset_body("web", replicas, policy="tenth", claims=True))
    ready = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    return str(ready["status"]["currentRevision"])


def test_operator_killed_at_random_moments_of_a_rollout_never_breaks_the_policy(
    cluster: Any, kube: Kube, namespace: str
) -> None:
    with OperatorProcess(str(cluster.kubeconfig_path), namespace) as operator:
        first = setup_fleet(kube, namespace)
        claims = claim_uids(kube, namespace)
        assert len(claims) == 30
        with PodSampler(kube, namespace, "web") as sampler, OrdinalWatch(kube, namespace, "web") as ordinals:
            set_image(kube, namespace, "web", SLOW_BATCH)
            wait_for(lambda: locked(kube, namespace), TIMEOUT, "the upgrade to start")
            kill_while(operator, lambda: locked(kube, namespace), kills=10, seed=7)
            kills_during_rollout = operator.kills
            done = wait_for(
                lambda: (
                    (s := scaleset_ready(kube, namespace, "web"))
                    and s["status"]["currentRevision"] != first
                    and s
                ),
                TIMEOUT,
                "the rollout to converge",
            )
    assert kills_during_rollout >= 10, f"only {kills_during_rollout} kills landed during the rollout"
    assert done["status"]["updatedReplicas"] == 30
    assert sampler.max_unavailable(30) <= 3, "more instances were down than one batch (10 % of 30)"
    assert not ordinals.duplicates, f"an ordinal was held twice: {ordinals.duplicates[:3]}"
    assert claim_uids(kube, namespace) == claims, "a data disk was replaced"


def test_operator_killed_at_random_moments_of_a_rollback_never_breaks_the_policy(
    cluster: Any, kube: Kube, namespace: str
) -> None:
    with OperatorProcess(str(cluster.kubeconfig_path), namespace) as operator:
        first = setup_fleet(kube, namespace)
        claims = claim_uids(kube, namespace)
        set_image(kube, namespace, "web", f"{IMAGE}:v2")
        second = wait_for(
            lambda: (
                (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {})
                .get("upgrade", {})
                .get("toRevision")
            ),
            TIMEOUT,
            "the upgrade to start",
        )
        wait_for(lambda: on_revision(kube, namespace, second) >= 15, TIMEOUT, "half the fleet updated")
        # Slow the way back down, so that the rollback takes long enough to be killed ten times.
        with PodSampler(kube, namespace, "web") as sampler, OrdinalWatch(kube, namespace, "web") as ordinals:
            kube.patch(
                fleet_path("upgradepolicies", namespace, "tenth"),
                {"spec": {"rollingUpgrade": {"pauseTimeBetweenBatches": "4s"}}},
                MERGE_PATCH,
            )
            kube.patch(
                fleet_path("scalesets", namespace, "web"),
                {"metadata": {"annotations": {ANNOTATION_ROLLBACK: "true"}}},
                MERGE_PATCH,
            )

            def rolling_back() -> bool:
                upgrade = (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
                    "upgrade"
                ) or {}
                return upgrade.get("phase") != "Failed"

            kill_while(operator, rolling_back, kills=10, seed=11)
            kills = operator.kills
            wait_for(lambda: not rolling_back(), TIMEOUT, "the rollback to finish")
            wait_for(lambda: on_revision(kube, namespace, first) == 30, TIMEOUT, "every instance back")
    assert kills >= 10, f"only {kills} kills landed during the rollback"
    upgrade = kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"]
    assert upgrade["history"][-1]["result"] == "RolledBack"
    assert sampler.max_unavailable(30) <= 3
    assert not ordinals.duplicates
    assert claim_uids(kube, namespace) == claims


def test_rollout_and_rollback_complete_through_api_faults_and_dropped_watches(
    cluster: Any, kube: Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    create(kube, namespace, policy_body("p", rollingUpgrade={"pauseTimeBetweenBatches": "1s"}))
    create(kube, namespace, scaleset_body("web", 10, policy="p"))
    caplog.set_level(logging.INFO)
    with OperatorThread(str(cluster.kubeconfig_path), namespaces=[namespace], resync_seconds=2.0):
        first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
            "currentRevision"
        ]
        cluster.faults.configure(error_rates={"*": 0.10}, watch_disconnect_every=3.0)
        with PodSampler(kube, namespace, "web") as sampler:
            set_image(kube, namespace, "web", f"{IMAGE}:v2")
            second = wait_for(
                lambda: (
                    (s := scaleset_ready(kube, namespace, "web"))
                    and s["status"]["currentRevision"] != first
                    and s
                ),
                TIMEOUT,
                "the rollout to complete through faults",
            )["status"]["currentRevision"]
            set_image(kube, namespace, "web", SLOW)
            wait_for(lambda: on_revision(kube, namespace, second) <= 8, TIMEOUT, "the next upgrade to start")
            kube.patch(
                fleet_path("scalesets", namespace, "web"),
                {"metadata": {"annotations": {ANNOTATION_ROLLBACK: "true"}}},
                MERGE_PATCH,
            )
            wait_for(
                lambda: (
                    kube.get(fleet_path("scalesets", namespace, "web"))["status"]["upgrade"].get("phase")
                    == "Failed"
                ),
                TIMEOUT,
                "the rollback to complete through faults",
            )
            wait_for(lambda: on_revision(kube, namespace, second) == 10, TIMEOUT, "every instance back")
        injected = sum(cluster.faults.injected.values())
    assert injected > 20, f"only {injected} faults were injected"
    assert sampler.max_unavailable(10) <= 2
    ours = [r for r in caplog.records if r.name.startswith("scaleset_operator")]
    assert any("retrying" in r.getMessage() for r in ours), "the operator met no fault it had to retry"
    tracebacks = [r.getMessage() for r in ours if r.exc_info]
    assert not tracebacks, f"the operator logged tracebacks: {tracebacks[:3]}"


def test_two_operators_never_run_two_batches_at_once(cluster: Any, kube: Kube, namespace: str) -> None:
    create(kube, namespace, policy_body("p", rollingUpgrade={"maxBatchInstancePercent": 10}))
    create(kube, namespace, scaleset_body("web", 20, policy="p"))
    kubeconfig = str(cluster.kubeconfig_path)
    with (
        OperatorThread(kubeconfig, namespaces=[namespace], resync_seconds=1.0),
        OperatorThread(kubeconfig, namespaces=[namespace], resync_seconds=1.0),
    ):
        first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")["status"][
            "currentRevision"
        ]
        with PodSampler(kube, namespace, "web") as sampler:
            set_image(kube, namespace, "web", f"{IMAGE}:v2-ready-after-20s")
            wait_for(
                lambda: (
                    (s := scaleset_ready(kube, namespace, "web"))
                    and s["status"]["currentRevision"] != first
                    and s
                ),
                TIMEOUT,
                "the rollout to complete under two operators",
            )
    # Batches of 2 (10 % of 20): with two operators racing, a second batch would show as 4 down.
    assert sampler.max_unavailable(20) <= 2
    started = {
        e["message"]
        for e in kube.list(core_path("events", namespace))
        if e["reason"] == "BatchStarted" and e["involvedObject"]["name"] == "web"
    }
    assert len(started) == 10, f"{len(started)} distinct batches were started for 10 batches of work"


class Crash(Exception):
    """The operator process dies here."""


class CrashingKube(Kube):
    """Dies before its `limit`-th write to a ScaleSet's status or to a Service: an operator killed
    between two steps of a swap (the record, each Service, the new production slot)."""

    def __init__(self, api_client: Any, limit: int) -> None:
        super().__init__(api_client)
        self.limit = limit
        self.writes = 0

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if method != "GET" and ("/services" in path or path.endswith("/status")):
            self.writes += 1
            if self.writes >= self.limit:
                raise Crash(f"killed before {method} {path}")
        return super().request(method, path, *args, **kwargs)


def test_an_operator_killed_at_every_step_of_a_swap_leaves_one_set_in_production(
    kube: Kube, namespace: str
) -> None:
    from scaleset_operator.control.reconcile import Reconciler
    from scaleset_operator.identity import LABEL_SLOT
    from tests.integration.helpers import is_ready, pods_of

    create(kube, namespace, policy_body("staged", mode="Staged"))
    create(kube, namespace, scaleset_body("web", 2, policy="staged"))
    for service in ("web", "web-admin"):
        kube.create(
            core_path("services", namespace),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            },
        )
    reconciler = Reconciler(kube)

    def staged() -> dict[str, Any]:
        status = kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}
        return dict(status.get("staged") or {}, template=status.get("updateRevision"))

    def selected() -> set[str | None]:
        return {
            kube.get(core_path("services", namespace, s))["spec"]["selector"].get(LABEL_SLOT)
            for s in ("web", "web-admin")
        }

    def settled() -> bool:
        reconciler.reconcile(namespace, "web")
        now = staged()
        production = [
            p
            for p in pods_of(kube, namespace, "web")
            if p["metadata"]["labels"].get(LABEL_SLOT) == now.get("production")
        ]
        return (
            not now.get("swap")
            and now.get("productionRevision") == now["template"]
            and selected() == {now["production"]}
            and len(production) == 2
            and all(is_ready(p) for p in production)
        )

    wait_for(settled, TIMEOUT, "web Ready on slot blue", interval=0.1)
    killed = []
    for limit in range(1, 6):
        before = staged()
        set_image(kube, namespace, "web", f"{IMAGE}:v{limit + 1}")

        def standby_ready(serving: str = before["production"]) -> bool:
            template = staged()["template"]
            pods = [
                p
                for p in pods_of(kube, namespace, "web")
                if p["metadata"]["labels"].get(LABEL_SLOT) != serving
                and p["metadata"]["labels"][LABEL_REVISION] == template
                and not p["metadata"].get("deletionTimestamp")
            ]
            if len(pods) < 2:  # passes until the staged set exists, none once it does: the next one swaps
                reconciler.reconcile(namespace, "web")
                return False
            return all(is_ready(p) for p in pods)

        wait_for(standby_ready, TIMEOUT, f"the staged set of try {limit} Ready", interval=0.1)
        try:
            Reconciler(CrashingKube(kube.api_client, limit)).reconcile(namespace, "web")
        except Crash:
            killed.append(limit)
        after = staged()
        target = (after.get("swap") or {}).get("toSlot")
        # Killed mid-swap, the Services select production or the slot the recorded swap moves them to,
        # each exactly one; the next operator finishes the swap.
        assert None not in selected() and selected() <= {after["production"], target}, (
            limit,
            after,
            selected(),
        )
        wait_for(settled, TIMEOUT, f"one set in production after a kill before write {limit}", interval=0.1)
        assert staged()["production"] != before["production"], f"try {limit} did not swap"
    # Killed before recording the swap, between the two Services, before and after the new production.
    assert killed[:4] == [1, 2, 3, 4]
