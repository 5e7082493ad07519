"""Several operator replicas on one Lease: only the holder writes, and a standby finishes a rollout when
the leader is killed, stalled, stopped or replaced; a write refused by its precondition ends the pass.

The replicas are `scaleset operator --leader-elect` processes, each reaching the API server through a
loopback proxy of its own that the test can stall. On the testbed they run under the ServiceAccount
and ClusterRole of manifests/rbac.yaml, and the API server's audit log shows every write of each
replica (by its user agent): none may overlap another replica's term as leader (audit_writes.py).
kubesim keeps no audit log; there the same runs check what the pods show.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.testing import use_testbed
from scaleset_operator.control.kube import Kube, core_path, fleet_path, group_path
from scaleset_operator.control.reconcile import Reconciler
from scaleset_operator.identity import LABEL_SLOT
from scaleset_operator.planning.host_maintenance import MAINTENANCE_LABEL, MAINTENANCE_PENDING
from tests.integration.audit_writes import replica_writes_from_file, terms, writes_outside_own_term
from tests.integration.conftest import install_crds, service_account_kubeconfig
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)
from tests.integration.stalling_proxy import StallingProxy
from tests.integration.test_metrics import free_port, scrape, value
from tests.integration.test_staged import service_body

TIMEOUT = 120
LEASE_SECONDS = 3
LEASE_NAMESPACE = "scaleset-system"

pytestmark = pytest.mark.e2e


@dataclass
class Bed:
    """A cluster of the module's own (no other operator may run beside the replicas)."""

    kube: Kube
    operator_kubeconfig: str  # the replicas' credentials: the ServiceAccount's on the testbed
    audit_log: Path | None
    folder: Path


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        pytest.skip("needs a cluster with no operator running; run it on kubesim or the testbed")
    folder = tmp_path_factory.mktemp("high-availability")
    if use_testbed():
        from kubesim.testbed import Testbed

        with Testbed(nodes=2, time_scale=20.0, state_dir=folder / "testbed") as testbed:
            kube = Kube.from_kubeconfig(str(testbed.kubeconfig_path))
            install_crds(kube)
            credentials = service_account_kubeconfig(
                kube, str(testbed.kubeconfig_path), folder / "operator.kubeconfig"
            )
            yield Bed(kube, credentials, testbed.audit_log, folder)
        return
    from kubesim.cluster import ThreadedCluster

    with ThreadedCluster(nodes=2, time_scale=20.0, kubeconfig_path=str(folder / "kubeconfig")) as cluster:
        kube = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
        install_crds(kube)
        kube.create(
            core_path("namespaces"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}},
        )
        yield Bed(kube, str(cluster.kubeconfig_path), None, folder)


@pytest.fixture
def namespace(bed: Bed) -> str:
    name = f"ha-{uuid.uuid4().hex[:8]}"
    bed.kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


class Replica:
    """`scaleset operator --leader-elect` in a process of its own, behind a proxy of its own."""

    def __init__(self, bed: Bed, name: str, lease: str) -> None:
        scaleset = shutil.which("scaleset", path=str(Path(sys.executable).parent))
        assert scaleset, "the scaleset command is installed with the project"
        self.name = name
        config = yaml.safe_load(Path(bed.operator_kubeconfig).read_text())
        server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
        self.proxy = StallingProxy(server.hostname or "127.0.0.1", server.port or 443).__enter__()
        config["clusters"][0]["cluster"]["server"] = f"{server.scheme}://127.0.0.1:{self.proxy.port}"
        kubeconfig = bed.folder / f"{name}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = bed.folder / f"{name}.log"
        self.process = subprocess.Popen(
            [
                scaleset,
                "operator",
                "--kubeconfig",
                str(kubeconfig),
                "--leader-elect",
                f"--lease-namespace={LEASE_NAMESPACE}",
                f"--lease-name={lease}",
                f"--lease-duration={LEASE_SECONDS}",
                f"--metrics-address=127.0.0.1:{self.port}",
                f"--scheduled-events-address=127.0.0.1:{free_port()}",
                "--log-format=json",
            ],
            env={**os.environ, "POD_NAME": name},
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )

    def metric(self, name: str, **labels: str) -> float | None:
        try:
            return value(scrape(self.port), name, **labels)
        except OSError:
            return None

    @property
    def leads(self) -> bool:
        return self.process.poll() is None and self.metric("scaleset_leader") == 1

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(60)
        self.proxy.__exit__()
        return code


@pytest.fixture
def replicas(bed: Bed) -> Iterator[Callable[[str, str], Replica]]:
    started: list[Replica] = []

    def start(name: str, lease: str) -> Replica:
        started.append(Replica(bed, name, lease))
        return started[-1]

    yield start
    for replica in started:
        replica.stop(signal.SIGKILL)


def leader_of(running: list[Replica]) -> Replica:
    (leader,) = wait_for(lambda: (found := [r for r in running if r.leads]) and found, TIMEOUT, "one leader")
    return leader  # type: ignore[no-any-return]


def start_rollout(
    bed: Bed, namespace: str, replicas: int = 5, pause: str = "1s"
) -> tuple[dict[str, Any], PodSampler]:
    """A Ready ScaleSet `web` whose image then changes: returns it as it was and a sampler of its pods."""
    kube = bed.kube
    policy = policy_body("slow", rollingUpgrade={"pauseTimeBetweenBatches": pause})
    kube.create(fleet_path("upgradepolicies", namespace), policy)
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", replicas, policy="slow"))
    before = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    sampler = PodSampler(kube, namespace, "web").__enter__()
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    wait_for(
        lambda: (
            (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get("upgrade") or {}
        ).get("currentBatch"),
        TIMEOUT,
        "the first batch to be recorded",
    )
    return before, sampler


def finish_rollout(
    bed: Bed, namespace: str, before: dict[str, Any], sampler: PodSampler, replicas: int = 5
) -> None:
    """The rollout ends Completed, never more than a batch down (20 % of the instances, at least one)."""
    after = wait_for(
        lambda: (
            (found := scaleset_ready(bed.kube, namespace, "web"))
            and found["status"]["currentRevision"] != before["status"]["currentRevision"]
            and found
        ),
        TIMEOUT,
        "the rollout to finish",
    )
    sampler.__exit__()
    assert [entry["result"] for entry in after["status"]["upgrade"]["history"]][-1] == "Completed"
    # Two replicas writing at once would take two batches down.
    assert sampler.max_unavailable(replicas) <= max(1, replicas // 5)


def assert_one_writer_at_a_time(bed: Bed, lease: str, names: list[str]) -> None:
    """From the audit log (the testbed): each replica's writes inside its own terms as leader only."""
    if bed.audit_log is None:
        return  # kubesim keeps no audit log; the pods' record above is what it shows
    writes = [
        w
        for w in replica_writes_from_file(bed.audit_log, LEASE_NAMESPACE, lease)
        if w.replica.split("_", 1)[0] in names
    ]
    held = terms(writes)
    assert len(held) >= 2, f"the Lease changed hands: {held}"
    # The handover came mid-rollout: the first leader and at least one later holder wrote. (A holder
    # may hold the Lease for a moment and write nothing, as the second of a rolling update can.)
    writers = {w.replica for w in writes if not w.lease}
    assert held[0].replica in writers, f"the first leader wrote: {sorted(writers)}"
    assert len(writers) >= 2, f"a second leader wrote too: {sorted(writers)}"
    overlapping = writes_outside_own_term(writes)
    assert not overlapping, "\n".join(f"{write} during {term}" for write, term in overlapping[:10])


def test_a_killed_leader_is_replaced_mid_rollout_and_never_two_write(
    bed: Bed, namespace: str, replicas: Callable[[str, str], Replica]
) -> None:
    running = [replicas("killed-a", "killed"), replicas("killed-b", "killed")]
    wait_for(lambda: all(r.metric("scaleset_leader") is not None for r in running), TIMEOUT, "both serving")
    leader = leader_of(running)
    (standby,) = [r for r in running if r is not leader]
    lease = bed.kube.get(group_path("coordination.k8s.io", "v1", "leases", LEASE_NAMESPACE, "killed"))
    assert lease["spec"]["leaseDurationSeconds"] == LEASE_SECONDS
    before, sampler = start_rollout(bed, namespace)
    assert standby.metric("scaleset_leader") == 0, "the standby serves metrics too"
    assert not standby.metric("scaleset_reconcile_passes_total"), "a standby does not reconcile"
    leader.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: standby.leads, TIMEOUT, "the standby to take over")
    takeover = time.monotonic() - killed_at
    finish_rollout(bed, namespace, before, sampler)
    # Within the Lease's duration plus a retry period or two: seconds, not minutes.
    assert takeover < LEASE_SECONDS + 3, takeover
    assert standby.stop() == 0
    lease = bed.kube.get(group_path("coordination.k8s.io", "v1", "leases", LEASE_NAMESPACE, "killed"))
    assert lease["spec"]["holderIdentity"] in ("", None), "a replica stopped cleanly gives the Lease up"
    assert lease["spec"]["leaseTransitions"] >= 1
    assert_one_writer_at_a_time(bed, "killed", ["killed-a", "killed-b"])


def test_a_leader_whose_api_traffic_stalls_stops_writing_before_its_lease_lapses(
    bed: Bed, namespace: str, replicas: Callable[[str, str], Replica]
) -> None:
    running = [replicas("stalled-a", "stalled"), replicas("stalled-b", "stalled")]
    leader = leader_of(running)
    (standby,) = [r for r in running if r is not leader]
    before, sampler = start_rollout(bed, namespace)
    # Longer than the Lease: the standby takes over while the old leader's requests are held.
    leader.proxy.pause()
    stalled_at = time.monotonic()
    wait_for(lambda: standby.leads, LEASE_SECONDS * 4, "the standby to take over")
    assert time.monotonic() - stalled_at >= LEASE_SECONDS - 1, "not before the Lease could have lapsed"
    time.sleep(max(0.0, stalled_at + LEASE_SECONDS * 2.5 - time.monotonic()))
    leader.proxy.resume()
    finish_rollout(bed, namespace, before, sampler)
    assert leader.metric("scaleset_leader") == 0, "the old leader sees the new holder and stays a standby"
    for replica in running:
        assert replica.stop() == 0
    assert_one_writer_at_a_time(bed, "stalled", ["stalled-a", "stalled-b"])


def test_sigterm_mid_rollout_hands_over_only_after_the_last_write(
    bed: Bed, namespace: str, replicas: Callable[[str, str], Replica]
) -> None:
    running = [replicas("sigterm-a", "sigterm"), replicas("sigterm-b", "sigterm")]
    leader = leader_of(running)
    (standby,) = [r for r in running if r is not leader]
    before, sampler = start_rollout(bed, namespace, replicas=10)
    # Passes run on every pod change of a rollout: SIGTERM now comes mid-pass or between two.
    wait_for(lambda: (leader.metric("scaleset_reconcile_passes_total") or 0) > 3, TIMEOUT, "passes")
    leader.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    wait_for(lambda: standby.leads, TIMEOUT, "the standby to take over")
    # Released, not expired: the standby need not wait out the Lease.
    assert time.monotonic() - stopped_at < LEASE_SECONDS + 5
    assert leader.stop() == 0
    finish_rollout(bed, namespace, before, sampler, replicas=10)
    assert standby.stop() == 0
    assert_one_writer_at_a_time(bed, "sigterm", ["sigterm-a", "sigterm-b"])


def test_a_rolling_update_of_the_operator_itself_never_has_two_writers(
    bed: Bed, namespace: str, replicas: Callable[[str, str], Replica]
) -> None:
    """As the Deployment controller replaces two replicas with maxSurge 1, maxUnavailable 0: a new
    replica starts and serves, then an old one gets SIGTERM; twice; mid-rollout of a ScaleSet."""
    old = [replicas("rolling-old1", "rolling"), replicas("rolling-old2", "rolling")]
    leader = leader_of(old)
    before, sampler = start_rollout(bed, namespace, replicas=10, pause="3s")
    running = list(old)
    # The leader goes first (the controller may pick either), so the Lease changes hands mid-rollout.
    for index, leaving in enumerate(sorted(old, key=lambda r: r is not leader), start=1):
        new = replicas(f"rolling-new{index}", "rolling")
        running.append(new)
        wait_for(
            lambda new=new: new.metric("scaleset_leader") is not None, TIMEOUT, "the new replica serving"
        )  # type: ignore[misc]
        assert leaving.stop() == 0
        running.remove(leaving)
        leader_of(running)
    finish_rollout(bed, namespace, before, sampler, replicas=10)
    for replica in running:
        assert replica.stop() == 0
    assert_one_writer_at_a_time(
        bed, "rolling", ["rolling-old1", "rolling-old2", "rolling-new1", "rolling-new2"]
    )


# ---------------------------------------------------------------------- writes with preconditions


class RacingKube(Kube):
    """A Kube that lets another writer change the object a write is about to go to, just before it."""

    def __init__(self, kube: Kube, target: str, change: Callable[[], None]) -> None:
        super().__init__(kube.api_client)
        self.target, self.change, self.raced = target, change, 0

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if method == "PATCH" and path == self.target and not self.raced:
            self.raced += 1
            self.change()
        return super().request(method, path, *args, **kwargs)


def reconcile_until(reconciler: Reconciler, namespace: str, done: Callable[[], bool]) -> list[str]:
    steps = []
    for _ in range(20):
        steps.append(reconciler.reconcile(namespace, "web").step)
        if done():
            return steps
        time.sleep(0.2)
    raise AssertionError(f"not done after 20 passes: {steps}")


def test_a_node_label_write_refused_by_its_resource_version_ends_the_pass(bed: Bed, namespace: str) -> None:
    """The node tool gives a maintenance up (takes its label away) between the pass's read of the node
    and the pass's `ready` label: the label is refused (409) and the pass ends; the next pass leaves
    the node alone."""
    kube = bed.kube
    node = f"maintained-{uuid.uuid4().hex[:6]}"
    kube.create(
        core_path("nodes"),
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node, "labels": {MAINTENANCE_LABEL: MAINTENANCE_PENDING}},
            "spec": {"unschedulable": True},
        },
    )
    try:
        kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 0))
        path = core_path("nodes", name=node)

        def tool_gives_up() -> None:
            kube.patch(
                path, {"metadata": {"labels": {MAINTENANCE_LABEL: None}}, "spec": {"unschedulable": False}}
            )

        racing = RacingKube(kube, path, tool_gives_up)
        steps = reconcile_until(Reconciler(racing), namespace, lambda: racing.raced > 0)
        assert steps[-1] == "Conflict", "the refused label ends the pass, which reads again"
        for _ in range(2):
            Reconciler(racing).reconcile(namespace, "web")
        labels = kube.get(path)["metadata"].get("labels") or {}
        assert MAINTENANCE_LABEL not in labels, "the tool's decision stands: no `ready` on a node it gave up"
    finally:
        kube.delete(core_path("nodes", name=node))


def test_a_service_selector_write_refused_by_its_resource_version_ends_the_pass(
    bed: Bed, namespace: str
) -> None:
    """A user edits a Service between the pass's read and its selector patch (Staged mode pins the
    production slot): the patch is refused (409), the pass ends, and the next one pins it over the
    user's change, which stays."""
    kube = bed.kube
    kube.create(fleet_path("upgradepolicies", namespace), policy_body("staged", mode="Staged"))
    kube.create(core_path("services", namespace), service_body("web"))
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 1, policy="staged"))
    path = core_path("services", namespace, "web")

    def user_edits() -> None:
        kube.patch(path, {"metadata": {"annotations": {"team": "checkout"}}})

    racing = RacingKube(kube, path, user_edits)
    steps = reconcile_until(Reconciler(racing), namespace, lambda: racing.raced > 0)
    assert steps[-1] == "Conflict", "the refused patch ends the pass, which reads again"
    assert LABEL_SLOT not in kube.get(path)["spec"]["selector"]
    reconcile_until(Reconciler(racing), namespace, lambda: LABEL_SLOT in kube.get(path)["spec"]["selector"])
    assert kube.get(path)["metadata"]["annotations"]["team"] == "checkout"
