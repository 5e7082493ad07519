"""Pytest fixtures and helpers for tests against kubesim, or against any cluster named by KUBECONFIG.

Use from a conftest.py: `from kubesim.testing import kubesim_cluster, kubeconfig, k8s_client`.
A test module may set `KUBESIM_OPTIONS = {...}` (ThreadedCluster/Cluster keyword arguments, such as
`kubelet=False` or `bookmark_interval=0.2`) to shape the cluster its tests share.

With `KUBECONFIG` set and `KUBESIM_USE_KUBECONFIG=1`, the fixtures hand out that cluster instead
(so the same tests run against kind); with `KUBESIM_TESTBED=1` each cluster is a testbed of its own
(a real control plane, `kubesim.testbed`, with kubesim's kubelet simulator as its nodes unless the
options say `kubelet=False`). Tests that need kubesim internals (the store, fault injection) should
call `require_kubesim(cluster, reason)` to skip there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kubesim.cluster import ThreadedCluster
from kubesim.connection import connection_from_kubeconfig
from kubesim.testbed import Testbed

KUBECTL = os.environ.get("KUBECTL", shutil.which("kubectl") or "/usr/bin/kubectl")


def use_testbed() -> bool:
    """Whether fixtures should start a testbed (a real control plane) rather than kubesim."""
    return os.environ.get("KUBESIM_TESTBED") == "1"


def use_external_cluster() -> bool:
    """Whether fixtures should use the cluster of $KUBECONFIG rather than start kubesim."""
    return os.environ.get("KUBESIM_USE_KUBECONFIG") == "1" and bool(os.environ.get("KUBECONFIG"))


class ExternalCluster:
    """The cluster of $KUBECONFIG, with the parts of ThreadedCluster's interface that make sense there."""

    store: Any = None
    faults: Any = None
    kubelet: Any = None

    def __init__(self, kubeconfig_path: str | os.PathLike[str]) -> None:
        self.kubeconfig_path = Path(kubeconfig_path)
        client = api_client_for(self.kubeconfig_path)
        self.url = str(client.configuration.host)
        client.close()
        self.ssl_context = connection_from_kubeconfig(self.kubeconfig_path).ssl_context

    def api_client(self) -> Any:
        return api_client_for(self.kubeconfig_path)


AnyCluster = ThreadedCluster | ExternalCluster | Testbed


def require_kubesim(cluster: AnyCluster, reason: str) -> ThreadedCluster:
    """Skip the calling test unless it runs against kubesim; `reason` says what of kubesim it needs
    (its store, fault injection, an option a real API server does not have)."""
    if not isinstance(cluster, ThreadedCluster):
        pytest.skip(f"kubesim only: {reason}")
    return cluster


def kubesim_only(reason: str) -> pytest.MarkDecorator:
    """Mark tests that only make sense on kubesim (the reason says why); they skip where the fixtures
    hand out a real API server (KUBESIM_TESTBED=1 or KUBESIM_USE_KUBECONFIG=1)."""
    return pytest.mark.skipif(use_testbed() or use_external_cluster(), reason=f"kubesim only: {reason}")


@contextmanager
def cluster_for_tests(**options: Any) -> Iterator[AnyCluster]:
    """A started kubesim ThreadedCluster (stopped afterwards), or the external cluster when configured."""
    if use_external_cluster():
        yield ExternalCluster(os.environ["KUBECONFIG"])
        return
    if use_testbed():
        # Only what a real control plane can be asked for; the rest (faults, bookmark_interval,
        # event_window) shapes kubesim alone, and the tests that need it call require_kubesim.
        with (
            tempfile.TemporaryDirectory(prefix="testbed-") as state,
            Testbed(
                state_dir=state,
                nodes=options.get("nodes", 3),
                time_scale=options.get("time_scale", 1.0),
                kubelet=options.get("kubelet", True),
            ) as bed,
        ):
            yield bed
        return
    with ThreadedCluster(**options) as cluster:
        yield cluster


def api_client_for(kubeconfig_path: str | os.PathLike[str]) -> Any:
    """A `kubernetes.client.ApiClient` for a kubeconfig file."""
    from kubernetes import config

    new_client: Any = config.new_client_from_config
    return new_client(config_file=str(kubeconfig_path))


def kubectl(
    cluster: AnyCluster,
    *args: str,
    input: str | None = None,
    timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against the cluster; raises AssertionError with its output when it fails."""
    cache = Path(tempfile.gettempdir()) / "kubesim-kubectl-cache" / str(os.getpid())
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig_path),
        # A private discovery cache: clusters come and go on reused ports within one test run.
        "KUBECACHEDIR": str(cache),
    }
    result = subprocess.run(
        [KUBECTL, *args], input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def _options_for(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = dict(getattr(request.module, "KUBESIM_OPTIONS", {}) or {})
    marker = request.node.get_closest_marker("kubesim")
    if marker is not None:
        options.update(marker.kwargs)
    return options


@pytest.fixture(scope="module")
def kubesim_cluster(request: pytest.FixtureRequest) -> Iterator[AnyCluster]:
    """One cluster shared by the tests of a module (options from the module's KUBESIM_OPTIONS)."""
    with cluster_for_tests(**_options_for(request)) as cluster:
        yield cluster


@pytest.fixture
def fresh_kubesim_cluster(request: pytest.FixtureRequest) -> Iterator[AnyCluster]:
    """A cluster of the test's own (options from KUBESIM_OPTIONS and a `@pytest.mark.kubesim(...)` marker)."""
    with cluster_for_tests(**_options_for(request)) as cluster:
        yield cluster


@pytest.fixture
def kubeconfig(kubesim_cluster: AnyCluster) -> Path:
    """The kubeconfig path of the module's cluster."""
    return Path(kubesim_cluster.kubeconfig_path)


@pytest.fixture
def k8s_client(kubesim_cluster: AnyCluster) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` for the module's cluster."""
    client = kubesim_cluster.api_client()
    try:
        yield client
    finally:
        client.close()
