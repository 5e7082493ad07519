"""The wheel the image installs: built from the sources, installed in a new virtual environment, run.

No container image can be built where these tests run (no Docker engine); this is what the
Dockerfile's two stages do, minus the base image: `pip wheel`, then `pip install` of the runtime lock
(exact versions, hashes required) and of the wheel alone. That install has no sim extra: the operator
runs without kubesim's dependencies, and the sim commands say how to get them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.packaging


def run(*args: str | Path, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a new virtual environment holding only the wheel and its dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", tmp / "dist", ".")
    (wheel,) = (tmp / "dist").glob("scaleset_operator-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    bin_dir = tmp / "venv" / "bin"
    # --no-compile: byte-compiling every dependency takes half the install and proves nothing here.
    pip = (bin_dir / "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", "--no-deps")
    run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock")
    run(*pip, wheel)
    return bin_dir


def test_the_lock_is_complete_for_the_wheel(installed: Path) -> None:
    # With --no-deps above, a dependency missing from the lock would be missing here.
    run(installed / "pip", "check")


def test_the_wheel_holds_the_packages_and_no_tests(installed: Path) -> None:
    files = run(
        installed / "python", "-c", "import importlib.metadata as m; print(*m.files('scaleset-operator'))"
    )
    assert "scaleset_operator/runner.py" in files and "kubesim/server.py" in files
    assert "tests/" not in files


def test_the_installed_commands_run_outside_the_source_tree(installed: Path, tmp_path: Path) -> None:
    # COLUMNS: wide enough that the help's table shows every option whole.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    for command in (
        ["scaleset", "--help"],
        ["scaleset", "operator", "--help"],
        ["kubectl-scaleset", "--help"],
    ):
        result = subprocess.run(
            [str(installed / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
            env=env,
        )
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    operator_help = subprocess.run(
        [str(installed / "scaleset"), "operator", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    for option in (
        "--metrics-address",
        "--leader-elect",
        "--log-format",
        "--liveness",
        "--scheduled-events-identity",
    ):
        assert option in operator_help, option


def test_the_operator_runs_without_kubesims_dependencies(installed: Path, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    probe = (
        "import importlib.util, sys; import scaleset_operator.runner, scaleset_operator.cli.main; "
        "print([m for m in ('celpy', 'cryptography') if importlib.util.find_spec(m)], "
        "[m for m in sys.modules if m.split('.')[0] == 'kubesim'])"
    )
    result = subprocess.run(
        [str(installed / "python"), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []", "no sim dependency installed, kubesim not imported"
    # `scaleset testbed` runs kubesim's kubelet only, which needs nothing of the extra.
    refused = subprocess.run(
        [str(installed / "scaleset"), "sim"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: `scaleset sim` needs")
    assert lines[0].endswith("pip install 'scaleset-operator[sim]'.")


def test_the_dockerfile_installs_the_wheel_as_a_non_root_user_with_the_operator_as_entrypoint() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The base image by digest, so a rebuild cannot pick up another image under the same tag.
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    assert "pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels ." in dockerfile
    assert "COPY requirements.lock /tmp/requirements.lock" in dockerfile
    assert "pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.lock" in dockerfile
    assert "pip install --no-cache-dir --no-deps /wheels/*.whl" in dockerfile
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", (
        "a numeric non-root user, for runAsNonRoot"
    )
    assert re.search(r'^ENTRYPOINT \["scaleset", "operator"\]$', dockerfile, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile, "nothing is written on a read-only root filesystem"
    deployment = (ROOT / "manifests" / "deployment.yaml").read_text()
    assert f"runAsUser: {user.split(':')[0]}" in deployment
