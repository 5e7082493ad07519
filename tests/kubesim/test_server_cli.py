"""Running the embedded cluster from the command line: `scaleset sim` and `python -m kubesim`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubesim.testing import KUBECTL, kubesim_only

pytestmark = [
    pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed"),
    kubesim_only("the command lines that start kubesim itself"),
]

SCALESET = [sys.executable, "-c", "from scaleset_operator.cli.main import main; main()"]


def run_until_ready(command: list[str], kubeconfig: Path, scheme: str = "https") -> None:
    """Start the cluster, use it with kubectl, then stop it with SIGTERM and expect a clean exit."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith(f"kubesim ready at {scheme}://127.0.0.1:"), line
            assert line.strip().endswith(f"export KUBECONFIG={kubeconfig}")
            url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
            assert url in line
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "KUBECACHEDIR": str(kubeconfig.parent / "cache"),
            }
            namespaces = subprocess.run(
                [KUBECTL, "get", "namespaces", "-o", "name"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert "namespace/default" in namespaces.stdout.split(), namespaces.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert proc.returncode == 0


def test_scaleset_sim_serves_until_terminated(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    run_until_ready([*SCALESET, "sim", "--kubeconfig", str(kubeconfig), "--nodes", "1"], kubeconfig)


def test_python_m_kubesim_serves_until_terminated(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    run_until_ready(
        [sys.executable, "-m", "kubesim", "--kubeconfig", str(kubeconfig), "--no-kubelet"], kubeconfig
    )


def test_python_m_kubesim_serves_plain_http_by_option(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    run_until_ready(
        [sys.executable, "-m", "kubesim", "--kubeconfig", str(kubeconfig), "--no-kubelet", "--plain-http"],
        kubeconfig,
        scheme="http",
    )
