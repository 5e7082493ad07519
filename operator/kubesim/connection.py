"""How a client of kubesim's reaches an API server named by a kubeconfig: URL, TLS context and headers."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Connection:
    """The server's URL, the TLS context to reach it (None for plain HTTP) and headers to send."""

    url: str
    ssl_context: ssl.SSLContext | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _material(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    """The bytes of `key-data` (base64) or of the file named by `key` (relative to the kubeconfig)."""
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        return (base / str(path)).read_bytes()
    return None


def connection_from_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> Connection:
    """Read the current (or named) context of a kubeconfig: server, CA, client certificate or token."""
    source = Path(path)
    config = yaml.safe_load(source.read_text()) or {}

    def named(kind: str, name: str) -> dict[str, Any]:
        for item in config.get(kind) or []:
            if item.get("name") == name:
                return dict(item.get(kind[:-1]) or {})
        raise ValueError(f"kubeconfig {source} has no {kind[:-1]} named {name!r}")

    current = named("contexts", context or str(config.get("current-context") or ""))
    cluster = named("clusters", str(current.get("cluster")))
    user = named("users", str(current["user"])) if current.get("user") else {}
    url = str(cluster["server"]).rstrip("/")
    headers: dict[str, str] = {}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (source.parent / str(user["tokenFile"])).read_text().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if not url.startswith("https://"):
        return Connection(url, None, headers)

    context_ = ssl.create_default_context()
    ca = _material(cluster, "certificate-authority", source.parent)
    if cluster.get("insecure-skip-tls-verify"):
        context_.check_hostname = False
        context_.verify_mode = ssl.CERT_NONE
    elif ca is not None:
        context_.load_verify_locations(cadata=ca.decode())
    cert = _material(user, "client-certificate", source.parent)
    key = _material(user, "client-key", source.parent)
    if cert is not None and key is not None:
        # The ssl module loads a client key only from a file: a private one, removed at once.
        with tempfile.TemporaryDirectory() as folder:
            pair = Path(folder) / "client.pem"
            pair.touch(mode=0o600)
            pair.write_bytes(cert + b"\n" + key)
            context_.load_cert_chain(str(pair))
    return Connection(url, context_, headers)
