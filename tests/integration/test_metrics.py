"""/metrics scraped during a rollout on kubesim, parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaleset_operator.control.kube import MERGE_PATCH, Kube, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import install_crds
from tests.integration.helpers import IMAGE, policy_body, scaleset_body, scaleset_ready, wait_for

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60

pytestmark = pytest.mark.e2e

Samples = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


# The registry is the process's: the suite's own operator may report other ScaleSets beside this test's.
MINE = {"namespace": "default", "scaleset": "web"}


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Kube]]:
    from kubesim.cluster import ThreadedCluster

    with ThreadedCluster(nodes=2, time_scale=20.0, kubeconfig_path=str(tmp_path / "kubeconfig")) as running:
        kubeconfig = str(running.kubeconfig_path)
        kube = Kube.from_kubeconfig(kubeconfig)
        install_crds(kube)
        yield kubeconfig, kube


def test_metrics_follow_a_rollout_by_domain_revision_and_phase(cluster: tuple[str, Kube]) -> None:
    kubeconfig, kube = cluster
    port = free_port()
    kube.create(
        fleet_path("upgradepolicies", "default"),
        # Long enough between batches that a scrape surely lands while both revisions run.
        policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": "3s"}),
    )
    kube.create(fleet_path("scalesets", "default"), scaleset_body("web", 5, policy="slow"))
    with OperatorThread(kubeconfig, resync_seconds=2.0, metrics_address=f"127.0.0.1:{port}"):
        before = wait_for(lambda: scaleset_ready(kube, "default", "web"), TIMEOUT, "web Ready")
        old = before["status"]["currentRevision"]
        idle = wait_for(
            lambda: (
                (s := scrape(port))
                and value(s, "scaleset_instances", **MINE, revision=old, health="healthy") == 5
                and s
            ),
            TIMEOUT,
            "five healthy instances in the metrics",
        )
        assert value(idle, "scaleset_leader") == 1
        assert value(idle, "scaleset_replicas", namespace="default", scaleset="web") == 5
        domains = {
            labels["upgrade_domain"]
            for labels, _ in idle["scaleset_instances"]
            if MINE.items() <= labels.items()
        }
        assert domains == {"0", "1", "2", "3", "4"}

        containers = before["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = f"{IMAGE}:v2"
        kube.patch(
            fleet_path("scalesets", "default", "web"),
            {"spec": {"template": {"spec": {"containers": containers}}}},
            MERGE_PATCH,
        )
        # Scrape throughout the rollout; the status writes and the pods it reflects change at their
        # own moments, so each fact is looked for in some scrape rather than all in one.
        seen: set[str] = set()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and len(seen) < 3:
            s = scrape(port)
            if not s:
                continue
            if value(s, "scaleset_instances", **MINE, revision=old) > 0 and (
                len(
                    {
                        labels["revision"]
                        for labels, _ in s["scaleset_instances"]
                        if MINE.items() <= labels.items()
                    }
                )
                == 2
            ):
                seen.add("both revisions")
            # Other operators of this test process may have left ScaleSets in the shared registry:
            # only this cluster's default/web counts.
            if (
                value(
                    s, "scaleset_upgrade_phase", namespace="default", scaleset="web", phase="RollingForward"
                )
                >= 1
            ):
                seen.add("RollingForward")
            if value(s, "scaleset_status_condition", **MINE, condition="Progressing", status="true") == 1:
                seen.add("Progressing")
            time.sleep(0.02)
        assert seen == {"both revisions", "RollingForward", "Progressing"}, (
            f"mid-rollout scrapes showed only {seen}"
        )

        after = wait_for(
            lambda: (
                (s := scaleset_ready(kube, "default", "web")) and s["status"]["currentRevision"] != old and s
            ),
            TIMEOUT,
            "the rollout to finish",
        )
        new = after["status"]["currentRevision"]
        # The pods are healthy before the operator writes the status that says so, and the metrics
        # learn each from its own watch event: wait for a scrape that has seen both.
        done = wait_for(
            lambda: (
                (s := scrape(port))
                and value(s, "scaleset_instances", **MINE, revision=new, health="healthy") == 5
                and value(s, "scaleset_status_condition", **MINE, condition="Ready", status="true") == 1
                and s
            ),
            TIMEOUT,
            "five healthy instances on the new revision and the ScaleSet Ready in the metrics",
        )
    assert value(done, "scaleset_instances", **MINE, revision=old) == 0
    # Five instances at 20 % are five batches of one; each is timed from its start to healthy.
    assert value(done, "scaleset_batch_duration_seconds_count") >= 4
    assert value(done, "scaleset_batch_duration_seconds_sum") > 0
    assert value(done, "scaleset_reconcile_passes_total", result="success") > 0
    assert value(done, "scaleset_reconcile_duration_seconds_count") > 0
    assert value(done, "scaleset_api_requests_total", verb="patch", code="200") > 0
    assert value(done, "scaleset_api_requests_total", verb="list", code="200") > 0
    assert value(done, "scaleset_api_requests_total", verb="create", code="201") > 0
