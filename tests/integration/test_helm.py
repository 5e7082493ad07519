"""The Helm chart installed with the real helm onto the testbed (a real control plane: RBAC enforced,
its version checked against the chart's kubeVersion), the operator running under the chart's
ServiceAccount and RBAC while a ScaleSet rolls, then `helm uninstall` leaving nothing behind.

No image can be pulled here, so the chart's Deployment runs simulated pods; the operator runs as a
process with a token of the chart's ServiceAccount, as `make e2e-real` runs it for manifests/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.testing import use_testbed
from scaleset_operator.control.kube import Kube, core_path, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.conftest import _crd_served, token_kubeconfig
from tests.integration.helpers import IMAGE, create, scaleset_body, scaleset_ready, set_image, wait_for
from tests.integration.rbac_usage import format_permissions, usage_from_audit_file
from tests.unit.test_chart import helm_binary

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "scaleset-operator"
NAMESPACE = "scaleset-system"
TIMEOUT = 90
DIGEST = "sha256:" + "5e" * 32


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dist/ of `make release`: what a user without the sources has."""
    dist = tmp_path_factory.mktemp("release") / "dist"
    result = subprocess.run(
        ["make", "--no-print-directory", "release", f"DIST={dist}", f"IMAGE_DIGEST={DIGEST}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dist


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not use_testbed():
        pytest.skip("needs a real API server's RBAC and version: runs on the testbed (make e2e-real)")
    from kubesim.testbed import Testbed

    with Testbed(nodes=2, time_scale=20.0, state_dir=tmp_path_factory.mktemp("helm-testbed")) as testbed:
        yield testbed


def helm(bed: Any, *args: str) -> str:
    result = subprocess.run(
        [str(helm_binary()), "--kubeconfig", str(bed.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"helm {args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def kubectl(bed: Any, *args: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed"
    result = subprocess.run(
        [kubectl, "--kubeconfig", str(bed.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_testbed_reports_the_version_of_its_kubernetes_modules(bed: Any) -> None:
    (module,) = re.findall(r"^\s*k8s\.io/kubernetes (v\S+)", (ROOT / "testbed" / "go.mod").read_text(), re.M)
    version = json.loads(kubectl(bed, "version", "-o", "json"))["serverVersion"]
    assert version["gitVersion"] == module
    assert (version["major"], version["minor"]) == tuple(module.lstrip("v").split(".")[:2])


def release_objects(kube: Kube) -> list[str]:
    """Every object of the release still in the cluster (labelled as Helm labels what it installs)."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    found = []
    for path in (
        core_path("serviceaccounts", NAMESPACE),
        core_path("services", NAMESPACE),
        "/apis/apps/v1/namespaces/scaleset-system/deployments",
        "/apis/policy/v1/namespaces/scaleset-system/poddisruptionbudgets",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    ):
        found += [f"{path.rsplit('/', 1)[-1]}/{o['metadata']['name']}" for o in kube.list(path, selector)]
    return found


def test_helm_install_runs_a_rollout_under_the_charts_rbac_and_uninstall_leaves_nothing(
    bed: Any, release: Path, tmp_path: Path
) -> None:
    kube = Kube.from_kubeconfig(str(bed.kubeconfig_path))
    (chart,) = release.glob("scaleset-operator-*.tgz")
    # The chart's kubeVersion is checked against the testbed's real version.
    out = helm(bed, "install", RELEASE, str(chart), "--namespace", NAMESPACE, "--create-namespace")
    assert "STATUS: deployed" in out
    installed = release_objects(kube)
    assert {
        "clusterroles/scaleset-operator",
        "deployments/scaleset-operator",
        "serviceaccounts/scaleset-operator",
    } <= set(installed), installed
    # Helm installs the chart's crds/ first.
    wait_for(lambda: _crd_served(kube, "scalesets"), 30, "the chart's CRDs served")

    account = f"system:serviceaccount:{NAMESPACE}:scaleset-operator"
    kubeconfig = token_kubeconfig(
        kube, str(bed.kubeconfig_path), tmp_path / "operator.kubeconfig", NAMESPACE, "scaleset-operator"
    )
    namespace = "helm-rollout"
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    with OperatorThread(kubeconfig, resync_seconds=5.0):
        roll(kube, namespace)
    usage = usage_from_audit_file(bed.audit_log, account)
    assert usage.used, "the audit log holds the operator's requests"
    assert not usage.refused, format_permissions(usage.refused)

    # The same with the operator confined to one namespace: writes granted there only.
    helm(
        bed,
        "upgrade",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--set",
        f"watchNamespaces={{{namespace}}}",
    )
    assert kube.get_or_none(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{RELEASE}"
    )
    with OperatorThread(kubeconfig, namespaces=[namespace], resync_seconds=5.0):
        roll(kube, namespace)
    usage = usage_from_audit_file(bed.audit_log, account)
    assert not usage.refused, format_permissions(usage.refused)

    helm(bed, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "60s")
    wait_for(lambda: not release_objects(kube), 30, "every object of the release gone")
    # Nothing stuck terminating in the release namespace; the CRDs stay (Helm never deletes them).
    wait_for(lambda: not kube.list(core_path("pods", NAMESPACE)), 60, "the operator's pods gone")
    assert _crd_served(kube, "scalesets")


def test_kubectl_apply_of_install_yaml_runs_a_rollout_and_delete_removes_it(
    bed: Any, release: Path, tmp_path: Path
) -> None:
    kube = Kube.from_kubeconfig(str(bed.kubeconfig_path))
    bundle = str(release / "install.yaml")
    kubectl(bed, "apply", "-f", bundle)
    deployment = kube.get("/apis/apps/v1/namespaces/scaleset-system/deployments/scaleset-operator")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"@{DIGEST}")
    wait_for(lambda: _crd_served(kube, "scalesets"), 30, "the bundle's CRDs served")
    account = f"system:serviceaccount:{NAMESPACE}:scaleset-operator"
    kubeconfig = token_kubeconfig(
        kube, str(bed.kubeconfig_path), tmp_path / "operator.kubeconfig", NAMESPACE, "scaleset-operator"
    )
    namespace = "bundle-rollout"
    kube.create(
        core_path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    with OperatorThread(kubeconfig, resync_seconds=5.0):
        roll(kube, namespace)
    usage = usage_from_audit_file(bed.audit_log, account)
    assert not usage.refused, format_permissions(usage.refused)
    kubectl(bed, "delete", "-f", bundle, "--wait", "--timeout=90s")
    assert not _crd_served(kube, "scalesets")
    assert kube.get_or_none(core_path("namespaces", name=NAMESPACE)) is None


def roll(kube: Kube, namespace: str) -> None:
    """A ScaleSet created, rolled to a new image and deleted by the operator."""
    create(kube, namespace, scaleset_body("web", 4, upgrade_domain_count=2))
    first = wait_for(lambda: scaleset_ready(kube, namespace, "web"), TIMEOUT, "web Ready")
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    done = wait_for(
        lambda: (
            (s := scaleset_ready(kube, namespace, "web"))
            and s["status"]["currentRevision"] != first["status"]["currentRevision"]
            and s
        ),
        TIMEOUT,
        "web Ready on v2",
    )
    assert done["status"]["updatedReplicas"] == 4
    kube.delete(fleet_path("scalesets", namespace, "web"))
    wait_for(lambda: not _exists(kube, fleet_path("scalesets", namespace, "web")), TIMEOUT, "web gone")
    wait_for(lambda: not kube.list(core_path("pods", namespace)), TIMEOUT, "web's instances gone")


def _exists(kube: Kube, path: str) -> bool:
    return kube.get_or_none(path) is not None
