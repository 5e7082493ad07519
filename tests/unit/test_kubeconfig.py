"""The CLI's choice of cluster, user and namespace from several kubeconfig files, compared with what
the real kubectl chooses from the same files (`kubectl config view --minify`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaleset_operator.cli.target import CommandError, connect

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]


def kubeconfig(
    path: Path,
    contexts: dict[str, tuple[str, str, str | None]],
    clusters: dict[str, str],
    users: dict[str, str],
    current: str | None = None,
    ca: str | None = None,
) -> Path:
    """A kubeconfig: contexts name -> (cluster, user, namespace), clusters name -> server, users name -> token."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": n, "cluster": {"server": s, **({"certificate-authority": ca} if ca else {})}}
            for n, s in clusters.items()
        ],
        "users": [{"name": n, "user": {"token": t}} for n, t in users.items()],
        "contexts": [
            {"name": n, "context": {"cluster": c, "user": u, **({"namespace": ns} if ns else {})}}
            for n, (c, u, ns) in contexts.items()
        ],
    }
    if current is not None:
        body["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body))
    return path


def kubectl_choice(files: list[Path], context: str | None) -> tuple[str, str, str]:
    """(server, token, namespace) kubectl uses with KUBECONFIG set to `files`."""
    env = {**os.environ, "KUBECONFIG": os.pathsep.join(str(f) for f in files)}
    args = ["kubectl", "config", "view", "--minify", "--raw", "-o", "json"]
    if context:
        args += ["--context", context]
    view = json.loads(subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout)
    (chosen,) = view["contexts"]
    (cluster,) = view["clusters"]
    (user,) = view["users"]
    return (
        cluster["cluster"]["server"],
        user["user"]["token"],
        chosen["context"].get("namespace") or "default",
    )


def our_choice(
    files: list[Path], context: str | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str, str]:
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(str(f) for f in files))
    target = connect(None, context, None)
    configuration = target.kube.api_client.configuration
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    token = header.removeprefix("Bearer ")
    return configuration.host, token, target.namespace


def scenario(tmp_path: Path, name: str) -> tuple[list[Path], str | None]:
    a, b, missing = tmp_path / "a" / "config", tmp_path / "b" / "config", tmp_path / "none" / "config"
    if name == "first file defines a context twice named":
        kubeconfig(a, {"dev": ("one", "alice", "team-a")}, {"one": "https://127.0.0.1:6443"}, {"alice": "ta"})
        kubeconfig(
            b,
            {"dev": ("two", "bob", "team-b")},
            {"two": "https://127.0.0.2:6443"},
            {"bob": "tb"},
            current="dev",
        )
        return [a, b], None
    if name == "current-context in both files":
        kubeconfig(
            a, {"dev": ("one", "alice", None)}, {"one": "https://127.0.0.1:6443"}, {"alice": "ta"}, "dev"
        )
        kubeconfig(
            b, {"prod": ("two", "bob", "ops")}, {"two": "https://127.0.0.2:6443"}, {"bob": "tb"}, "prod"
        )
        return [a, b], None
    if name == "cluster and user from different files":
        kubeconfig(a, {"mixed": ("two", "alice", "web")}, {}, {"alice": "ta"})
        kubeconfig(b, {}, {"two": "https://127.0.0.2:6443"}, {"alice": "ignored", "bob": "tb"}, "mixed")
        return [a, b], None
    if name == "a missing file in the list":
        kubeconfig(
            b, {"prod": ("two", "bob", "ops")}, {"two": "https://127.0.0.2:6443"}, {"bob": "tb"}, "prod"
        )
        return [missing, b], None
    if name == "--context names a context of the second file":
        kubeconfig(
            a, {"dev": ("one", "alice", "team-a")}, {"one": "https://127.0.0.1:6443"}, {"alice": "ta"}, "dev"
        )
        kubeconfig(b, {"prod": ("two", "bob", "ops")}, {"two": "https://127.0.0.2:6443"}, {"bob": "tb"})
        return [a, b], "prod"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "first file defines a context twice named",
        "current-context in both files",
        "cluster and user from different files",
        "a missing file in the list",
        "--context names a context of the second file",
    ],
)
def test_several_kubeconfig_files_are_merged_as_kubectl_merges_them(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, context = scenario(tmp_path, name)
    assert our_choice(files, context, monkeypatch) == kubectl_choice(files, context)


def test_a_relative_certificate_path_is_read_beside_its_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ca.crt").write_text("not read until a request is made\n")
    a = kubeconfig(tmp_path / "a" / "config", {}, {}, {})
    b = kubeconfig(
        tmp_path / "b" / "config",
        {"prod": ("two", "bob", None)},
        {"two": "https://127.0.0.2:6443"},
        {"bob": "tb"},
        "prod",
        ca="ca.crt",
    )
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), str(b)]))
    monkeypatch.chdir(tmp_path)
    # --flatten embeds the files kubectl reads: it found ca.crt beside b/config, not in the cwd.
    view = json.loads(
        subprocess.run(
            ["kubectl", "config", "view", "--minify", "--raw", "--flatten", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    embedded = base64.b64decode(view["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    ca = connect(None, None, None).kube.api_client.configuration.ssl_ca_cert
    assert Path(ca).read_text() == embedded == "not read until a request is made\n"


def test_a_context_that_no_file_defines_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, _ = scenario(tmp_path, "current-context in both files")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(str(f) for f in files))
    with pytest.raises(CommandError, match=r"cannot use the kubeconfig: .*staging"):
        connect(None, "staging", None)
