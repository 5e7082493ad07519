"""Kubeconfig files merged as kubectl merges them: --kubeconfig alone, else every file of $KUBECONFIG
(the first to set a value wins), else ~/.kube/config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

# Fields that name a file, resolved against the kubeconfig that holds them (kubectl's ResolvePaths).
FILE_FIELDS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key", "tokenFile")),
    "contexts": ("context", ()),
}


def kubeconfig_files(explicit: Path | None) -> list[Path]:
    """The files kubectl would read: --kubeconfig, else $KUBECONFIG's list, else ~/.kube/config if it
    exists; empty when none applies (then the pod's own account is used)."""
    if explicit is not None:
        return [explicit]
    listed = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return listed
    default = Path.home() / ".kube" / "config"
    return [default] if default.exists() else []


def merged(files: Sequence[Path], explicit: bool = False) -> dict[str, Any]:
    """One kubeconfig from `files`, merged by kubectl's rules: a cluster, user or context named in
    several files is taken from the first; current-context from the first file that sets one. A file of
    $KUBECONFIG that does not exist is skipped, as kubectl skips it; an explicit one must exist."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for path in files:
        if not path.exists():
            if explicit:
                raise FileNotFoundError(f"the kubeconfig {path} does not exist")
            continue
        loaded = yaml.safe_load(path.read_text()) or {}
        for section, (key, fields) in FILE_FIELDS.items():
            names = {entry["name"] for entry in config[section]}
            for entry in loaded.get(section) or []:
                if entry.get("name") in names:
                    continue
                names.add(entry.get("name"))
                config[section].append(_resolved(entry, key, fields, path.parent))
        if not config.get("current-context") and loaded.get("current-context"):
            config["current-context"] = loaded["current-context"]
    return config


def _resolved(entry: dict[str, Any], key: str, fields: Sequence[str], base: Path) -> dict[str, Any]:
    body = dict(entry.get(key) or {})
    for field in fields:
        value = body.get(field)
        if value and not os.path.isabs(os.path.expanduser(value)):
            body[field] = str(base / value)
    return {**entry, key: body}


def context_of(config: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The context `name` (default the current one) of a merged kubeconfig, {} when there is none."""
    wanted = name or config.get("current-context")
    for entry in config.get("contexts") or []:
        if entry.get("name") == wanted:
            return dict(entry.get("context") or {})
    return {}
