"""Two operator replicas on one Lease: only the holder acts, and the standby finishes a rollout when it dies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaleset_operator.control.kube import Kube, fleet_path, group_path
from tests.integration.conftest import install_crds
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)
from tests.integration.test_metrics import free_port, scrape, value

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
LEASE_SECONDS = 3

pytestmark = pytest.mark.e2e


class Replica:
    """`scaleset operator --leader-elect` in a process of its own, so it can be killed outright."""

    def __init__(self, kubeconfig: str, log: Path) -> None:
        scaleset = shutil.which("scaleset", path=str(Path(sys.executable).parent))
        assert scaleset, "the scaleset command is installed with the project"
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen(
            [
                scaleset,
                "operator",
                "--kubeconfig",
                kubeconfig,
                "--leader-elect",
                "--lease-namespace=default",
                f"--lease-duration={LEASE_SECONDS}",
                f"--metrics-address=127.0.0.1:{self.port}",
                f"--scheduled-events-address=127.0.0.1:{free_port()}",
                "--log-format=json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def metric(self, name: str, **labels: str) -> float | None:
        try:
            return value(scrape(self.port), name, **labels)
        except OSError:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Kube]]:
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        pytest.skip("needs a cluster with no operator running; run it on kubesim")
    from kubesim.cluster import ThreadedCluster

    with ThreadedCluster(nodes=2, time_scale=20.0, kubeconfig_path=str(tmp_path / "kubeconfig")) as running:
        kubeconfig = str(running.kubeconfig_path)
        kube = Kube.from_kubeconfig(kubeconfig)
        install_crds(kube)
        yield kubeconfig, kube


def leaders(replicas: list[Replica]) -> list[Replica]:
    return [r for r in replicas if r.process.poll() is None and r.metric("scaleset_leader") == 1]


def test_standby_takes_over_a_killed_leader_mid_rollout_and_never_two_act(
    cluster: tuple[str, Kube], tmp_path: Path
) -> None:
    kubeconfig, kube = cluster
    kube.create(
        fleet_path("upgradepolicies", "default"),
        policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "1s"}),
    )
    kube.create(fleet_path("scalesets", "default"), scaleset_body("web", 5, policy="slow"))
    replicas = [Replica(kubeconfig, tmp_path / "a.log"), Replica(kubeconfig, tmp_path / "b.log")]
    try:
        before = wait_for(lambda: scaleset_ready(kube, "default", "web"), TIMEOUT, "web Ready")
        wait_for(
            lambda: all(r.metric("scaleset_leader") is not None for r in replicas),
            TIMEOUT,
            "both serving metrics",
        )
        (leader,) = wait_for(lambda: (found := leaders(replicas)) and found, TIMEOUT, "one leader")
        (standby,) = [r for r in replicas if r is not leader]
        assert standby.metric("scaleset_leader") == 0, "the standby serves metrics too"
        assert not standby.metric("scaleset_reconcile_passes_total"), "a standby does not reconcile"
        lease = kube.get(group_path("coordination.k8s.io", "v1", "leases", "default", "scaleset-operator"))
        assert lease["spec"]["leaseDurationSeconds"] == LEASE_SECONDS

        with PodSampler(kube, "default", "web") as sampler:
            set_image(kube, "default", "web", f"{IMAGE}:v2")
            wait_for(
                lambda: (
                    (kube.get(fleet_path("scalesets", "default", "web")).get("status") or {})
                    .get("upgrade", {})
                    .get("currentBatch")
                ),
                TIMEOUT,
                "the first batch to be recorded",
            )
            assert not standby.metric("scaleset_reconcile_passes_total"), "a standby does not reconcile"
            leader.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: standby.metric("scaleset_leader") == 1, TIMEOUT, "the standby to take over")
            takeover = time.monotonic() - killed_at
            after = wait_for(
                lambda: (
                    (s := scaleset_ready(kube, "default", "web"))
                    and s["status"]["currentRevision"] != before["status"]["currentRevision"]
                    and s
                ),
                TIMEOUT,
                "the standby to finish the rollout",
            )
        # Within the Lease's duration plus a retry period or two: seconds, not minutes.
        assert takeover < LEASE_SECONDS + 3, takeover
        assert (standby.metric("scaleset_reconcile_passes_total") or 0) > 0
        # Five instances at 20 % are batches of one: two acting replicas would take two down at once.
        assert sampler.max_unavailable(5) <= 1
        history = after["status"]["upgrade"]["history"]
        assert [entry["result"] for entry in history][-1] == "Completed"

        # A replica stopped cleanly gives the Lease up at once.
        assert standby.stop() == 0
        lease = kube.get(group_path("coordination.k8s.io", "v1", "leases", "default", "scaleset-operator"))
        assert lease["spec"]["holderIdentity"] in ("", None)
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        for replica in replicas:
            replica.stop(signal.SIGKILL)
