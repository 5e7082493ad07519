"""Expiry and restarts of the real control plane: an etcd compaction (continue tokens and watch positions
from before it answer 410 Gone) and a kube-apiserver restart mid-rollout.

kopf's watches restart themselves on a 410 (an ERROR event of code 410 ends the stream; kopf lists
again) and list without pages; the operator's own paged lists read the list again whole. The rollout
converges, and never takes more instances down than its batch. Only the testbed has an etcd to compact
and an API server to restart: each test module here has a testbed of its own (a restart breaks every
client's connections).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from kubesim.testing import use_testbed
from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path
from scaleset_operator.handlers.scalesets import transient
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import install_crds, service_account_kubeconfig
from tests.integration.helpers import (
    IMAGE,
    PodSampler,
    create,
    scaleset_body,
    scaleset_ready,
    set_image,
    wait_for,
)

pytestmark = pytest.mark.e2e

# 1.5 real seconds at time scale 20 before an instance of the new image is Ready: five batches of it
# leave time to compact and restart the API server while the rollout runs.
SLOW = f"{IMAGE}:v2-ready-after-30s"


class PatientKube(Kube):
    """The tests' own client: waits through an API server restart, as kubectl users do."""

    def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        while True:
            try:
                return super().request(*args, **kwargs)
            except (ApiError, urllib3.exceptions.HTTPError, OSError) as error:
                if not transient(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not use_testbed():
        pytest.skip("compacts etcd and restarts kube-apiserver: the testbed's, a real control plane")
    from kubesim.testbed import Testbed

    with Testbed(nodes=3, time_scale=20.0, state_dir=tmp_path_factory.mktemp("expiry")) as running:
        yield running


@pytest.fixture(scope="module")
def kube(bed: Any) -> Kube:
    client = Kube.from_kubeconfig(str(bed.kubeconfig_path))
    install_crds(client)
    return PatientKube(client.api_client)


@pytest.fixture(scope="module")
def operator(bed: Any, kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorThread]:
    path: Path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    with OperatorThread(
        service_account_kubeconfig(kube, str(bed.kubeconfig_path), path), resync_seconds=5.0
    ) as op:
        yield op


def _namespace(kube: Kube, name: str) -> str:
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


def test_a_paged_list_whose_continue_token_expired_is_read_again_whole(bed: Any, kube: Kube) -> None:
    namespace = _namespace(kube, "paged")
    for index in range(7):
        kube.create(
            core_path("configmaps", namespace),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"item-{index}"}},
        )
    answers: list[int] = []
    plain_request = kube.request

    def request(method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = plain_request(method, path, *args, **kwargs)
        except ApiError as error:
            answers.append(error.status)
            raise
        answers.append(200)
        if len(answers) == 1:
            # After the first page: a write, etcd compacted past it, and an API server whose watch cache
            # starts afresh (it would otherwise serve the rest from a snapshot); the token is now too old.
            kube.create(
                core_path("configmaps", namespace),
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "written-meanwhile"}},
            )
            bed.compact()
            bed.restart_apiserver()
        return answer

    kube.request = request  # type: ignore[method-assign]
    try:
        listed = kube.list(core_path("configmaps", namespace), page=2)
    finally:
        del kube.request
    names = [item["metadata"]["name"] for item in listed]
    assert 410 in answers, f"the API server answered {answers}: the continue token did not expire"
    assert sorted(n for n in names if n != "kube-root-ca.crt") == sorted(
        [f"item-{i}" for i in range(7)] + ["written-meanwhile"]
    ), "one consistent list, every object once"


@pytest.mark.usefixtures("operator")
def test_a_rollout_converges_with_its_budget_held_across_compactions_and_an_api_server_restart(
    bed: Any, kube: Kube
) -> None:
    namespace = _namespace(kube, "rollout")
    create(kube, namespace, scaleset_body("web", 10))
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), 120, "web Ready")
    with PodSampler(kube, namespace, "web") as sampler:
        set_image(kube, namespace, "web", SLOW)
        wait_for(
            lambda: (
                (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get("upgrade") or {}
            ).get("currentBatch"),
            60,
            "the first batch",
        )
        bed.compact()
        bed.restart_apiserver()
        bed.compact()
        converged = wait_for(
            lambda: (
                (s := scaleset_ready(kube, namespace, "web")) and s["status"]["updatedReplicas"] == 10 and s
            ),
            240,
            "the rollout to converge after the restart",
        )
    assert converged["status"]["upgrade"]["phase"] == "Completed"
    # The default policy: batches of 20 % of 10 instances.
    assert sampler.max_unavailable(10) <= 2
