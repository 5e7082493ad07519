"""The real operator on a real API: kubesim by default; the cluster of $KUBECONFIG with KUBESIM_USE_KUBECONFIG=1;
the testbed (a real control plane with kubesim's kubelet as its nodes) with KUBESIM_TESTBED=1.

On the testbed the operator runs under the ServiceAccount and ClusterRole of manifests/rbac.yaml, and
the end of the run reports the verbs it was refused (failing the run) and the verbs it never used.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.testing import use_testbed
from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.helpers import wait_for
from tests.integration.rbac_usage import (
    Usage,
    format_permissions,
    granted,
    unused,
    usage_from_audit_file,
)

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "scaleset-system"
OPERATOR_ACCOUNT = "scaleset-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
# Automatic repairs' grace periods pass this many times faster for the operator under test: the API's
# minimum of 10 minutes becomes 6 seconds (a test-only setting of the operator; see test_repairs.py).
REPAIR_GRACE_DIVISOR = 100.0
# The testbed's audit log, once a session has started one: read at the end of the run.
_audit: dict[str, Path] = {}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def kubesim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The embedded cluster, the testbed, or None when the tests run against a real one (kind)."""
    if _external_kubeconfig():
        yield None
        return
    if use_testbed():
        from kubesim.testbed import Testbed

        with Testbed(nodes=3, time_scale=20.0, state_dir=tmp_path_factory.mktemp("testbed")) as bed:
            _audit["log"] = bed.audit_log
            yield bed
        return
    from kubesim.cluster import ThreadedCluster

    path = tmp_path_factory.mktemp("kubesim") / "kubeconfig"
    # Simulated kubelet time runs 20x faster: a 1 s readiness period passes in 50 ms.
    with ThreadedCluster(nodes=3, time_scale=20.0, kubeconfig_path=str(path)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kubeconfig(kubesim: Any) -> str:
    return _external_kubeconfig() or str(kubesim.kubeconfig_path)


def _external_kubeconfig() -> str | None:
    if os.environ.get("KUBESIM_USE_KUBECONFIG") == "1":
        return os.environ.get("KUBECONFIG") or None
    return None


@pytest.fixture
def kubelet(kubesim: Any) -> Any:
    """kubesim's kubelet simulator, for what only a simulator can show (volume identities, scripted faults)."""
    if kubesim is None:
        pytest.skip(
            "needs kubesim's kubelet simulator; on a real cluster the same behaviour is shown by uids"
        )
    return kubesim.kubelet


@pytest.fixture(scope="session")
def kube(kubeconfig: str) -> Kube:
    kube = Kube.from_kubeconfig(kubeconfig)
    install_crds(kube)
    return kube


def install_crds(kube: Kube) -> None:
    """The CRDs of crds/, created (or found) and served."""
    for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        try:
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except ApiError as error:
            if error.status != 409:
                raise
    wait_for(lambda: all(_crd_served(kube, p) for p in ("scalesets", "upgradepolicies")), 10, "CRDs served")


def _crd_served(kube: Kube, plural: str) -> bool:
    try:
        kube.list(fleet_path(plural, "default"))
        return True
    except ApiError:
        return False


@pytest.fixture(scope="session")
def operator_kubeconfig(kubeconfig: str, kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The operator's credentials: on the testbed a token of manifests/rbac.yaml's ServiceAccount."""
    if not use_testbed():
        return kubeconfig
    return service_account_kubeconfig(kube, kubeconfig, tmp_path_factory.mktemp("operator") / "kubeconfig")


def service_account_kubeconfig(kube: Kube, admin_kubeconfig: str, path: Path) -> str:
    """Apply the namespace and RBAC of manifests/, then write a kubeconfig with a token for the account."""
    documents = [
        *yaml.safe_load_all((ROOT / "manifests" / "namespace.yaml").read_text()),
        *yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()),
    ]
    collections = {
        "Namespace": core_path("namespaces"),
        "ServiceAccount": core_path("serviceaccounts", OPERATOR_NAMESPACE),
        "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/roles",
        "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/rolebindings",
    }
    for document in documents:
        try:
            kube.create(collections[document["kind"]], document)
        except ApiError as error:
            if error.status != 409:
                raise
    return token_kubeconfig(kube, admin_kubeconfig, path, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)


def token_kubeconfig(kube: Kube, admin_kubeconfig: str, path: Path, namespace: str, account: str) -> str:
    """A kubeconfig at `path` for the cluster of `admin_kubeconfig`, with a TokenRequest token of the
    ServiceAccount `namespace`/`account`."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 7200},
    }
    answer = kube.create(core_path("serviceaccounts", namespace, account, sub="token"), request)
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": admin["clusters"][0]["name"], "user": account},
            }
        ],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="session")
def operator(operator_kubeconfig: str, kube: Kube) -> Iterator[OperatorThread]:
    """The operator, serving the scheduled-events endpoint on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OperatorThread(
        operator_kubeconfig,
        resync_seconds=5.0,
        scheduled_events_address=f"127.0.0.1:{port}",
        test_only_repair_grace_divisor=REPAIR_GRACE_DIVISOR,
    ) as running:
        yield running


def _operator_usage() -> Usage | None:
    log = _audit.get("log")
    if log is None or not log.is_file():
        return None
    return usage_from_audit_file(log, OPERATOR_USER)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    usage = _operator_usage()
    if usage is not None and usage.refused and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    usage = _operator_usage()
    if usage is None:
        return
    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    )
    write = terminalreporter.write_line
    terminalreporter.section("RBAC of manifests/rbac.yaml, as the operator used it")
    for line in format_permissions(usage.refused):
        write(f"REFUSED (missing from the ClusterRole): {line}")
    for line in format_permissions(unused(granted(role), usage)):
        write(f"never used: {line}")
    write(f"{len(usage.used)} permissions used, {len(usage.refused)} refused")


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    for scaleset in kube.list(fleet_path("scalesets", name)):
        kube.delete(fleet_path("scalesets", name, scaleset["metadata"]["name"]))


@pytest.fixture
def configurations(kube: Kube) -> Iterator[list[str]]:
    """MaintenanceConfigurations are cluster-scoped: the names a test appends are deleted at its end."""
    created: list[str] = []
    yield created
    for name in created:
        kube.delete(fleet_path("maintenanceconfigurations", name=name))
