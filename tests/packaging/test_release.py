"""`make release`: what a user takes (the wheel, install.yaml, the packaged chart, the CHANGELOG), and
the CLI and kubectl plugin installed from the wheel alone, as `pipx install` installs them (a virtual
environment of their own, the wheel's runtime dependencies from the package index, nothing else)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import venv
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from tests.unit.test_manifests import TARGET_VERSION, rendered

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "5e" * 32
REPOSITORY = "ghcr.io/scaleset-operator/scaleset-operator"
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
# What the tests and linters need, which an installed CLI must not bring.
DEVELOPMENT_ONLY = {"pytest", "hypothesis", "ruff", "mypy", "lupa", "kubernetes-validate", "looptime"}

pytestmark = pytest.mark.packaging


def make_release(dist: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "release", f"DIST={dist}", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("release") / "dist"
    result = make_release(dist, f"IMAGE_DIGEST={DIGEST}")
    assert result.returncode == 0, result.stdout + result.stderr
    return dist


def test_the_release_holds_the_wheel_the_bundle_the_chart_and_the_changelog(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == sorted(
        [
            f"scaleset_operator-{VERSION}-py3-none-any.whl",
            "install.yaml",
            f"scaleset-operator-{VERSION}.tgz",
            "CHANGELOG.md",
        ]
    )
    assert f"## {VERSION}" in (dist / "CHANGELOG.md").read_text()


def test_install_yaml_is_the_kustomize_base_with_the_image_by_digest(dist: Path) -> None:
    documents = [d for d in yaml.safe_load_all((dist / "install.yaml").read_text()) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == sorted(d["kind"] for d in rendered())
    assert {"CustomResourceDefinition", "Namespace", "ClusterRole", "Deployment"} <= set(kinds)
    for document in documents:
        kubernetes_validate.validate(document, TARGET_VERSION, strict=True)
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REPOSITORY}@{DIGEST}"
    # Otherwise the objects of manifests/, unchanged.
    base = {(d["kind"], d["metadata"]["name"]): d for d in rendered()}
    for document in documents:
        expected = base[(document["kind"], document["metadata"]["name"])]
        if document["kind"] == "Deployment":
            expected["spec"]["template"]["spec"]["containers"][0]["image"] = container["image"]
        assert document == expected, document["kind"]


def test_make_release_refuses_an_image_without_its_digest(tmp_path: Path) -> None:
    for variables in ((), ("IMAGE_DIGEST=latest",), ("IMAGE_DIGEST=sha256:abc",)):
        result = make_release(tmp_path / "dist", *variables)
        assert result.returncode != 0
        assert "make release needs IMAGE_DIGEST=sha256:<64 hex digits>" in result.stdout + result.stderr
        assert not (tmp_path / "dist").exists(), "nothing half-built is left"


def test_the_packaged_chart_carries_its_crds_and_rbac_as_files(dist: Path) -> None:
    with tarfile.open(dist / f"scaleset-operator-{VERSION}.tgz") as archive:
        members = {m.name: m for m in archive.getmembers()}
        chart = yaml.safe_load(archive.extractfile("scaleset-operator/Chart.yaml").read())  # type: ignore[union-attr]
        for name in ("crds/scalesets.fleet.scaleset.dev.yaml", "files/rbac.yaml"):
            member = members[f"scaleset-operator/{name}"]
            assert member.isfile() and not member.issym(), name
    assert chart["version"] == chart["appVersion"] == VERSION


@pytest.fixture(scope="module")
def cli(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a virtual environment holding only the released wheel and its dependencies."""
    (wheel,) = dist.glob("*.whl")
    where = tmp_path_factory.mktemp("pipx") / "venv"
    venv.create(where, with_pip=True)
    result = subprocess.run(
        [where / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", wheel],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return where / "bin"


def run(command: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(command), *args], capture_output=True, text=True, timeout=120, check=False, env=env, cwd="/"
    )
    assert result.returncode == 0, f"{command.name} {args}: {result.stderr[-2000:]}"
    return result.stdout


def test_the_wheel_gives_scaleset_and_kubectl_scaleset_with_their_runtime_dependencies_only(
    cli: Path,
) -> None:
    assert run(cli / "scaleset", "--version").strip() == f"scaleset {VERSION}"
    assert run(cli / "kubectl-scaleset", "--version").strip() == f"scaleset {VERSION}"
    installed = {
        normal(item["name"])
        for item in json.loads(run(cli / "pip", "list", "--format", "json", "--disable-pip-version-check"))
    }
    assert not installed & DEVELOPMENT_ONLY, installed & DEVELOPMENT_ONLY
    requires = json.loads(
        run(
            cli / "python",
            "-c",
            "import importlib.metadata as m, json; print(json.dumps(m.requires('scaleset-operator')))",
        )
    )
    runtime = {normal(re.split(r"[<>=!~; \[]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r}
    assert {"kopf", "kubernetes", "typer"} <= runtime <= installed


def normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def commands_in_help(text: str) -> set[str]:
    return set(re.findall(r"^│ ([a-z][a-z-]+) ", text, re.M))


def test_the_plugin_shows_user_commands_only_and_kubectl_finds_it(cli: Path, tmp_path: Path) -> None:
    env = {"PATH": f"{cli}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path), "COLUMNS": "120"}
    scaleset = commands_in_help(run(cli / "scaleset", "--help", env=env))
    plugin = commands_in_help(run(cli / "kubectl-scaleset", "--help", env=env))
    assert {"sim", "testbed", "operator"} <= scaleset
    assert not plugin & {"sim", "testbed", "operator"}, plugin
    assert plugin == scaleset - {"sim", "testbed", "operator"}
    assert {"status", "history", "walk", "rollback", "plan"} <= plugin
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, check=False, timeout=60
    ).stdout
    assert str(cli / "kubectl-scaleset") in listed
    shown = subprocess.run(
        ["kubectl", "scaleset", "--help"], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert shown.returncode == 0 and "kubectl scaleset" in shown.stdout
