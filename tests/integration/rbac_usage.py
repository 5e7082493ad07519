"""Which verbs of a ClusterRole a client used, and which it was refused, from an API server's audit log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (apiGroup, resource or resource/subresource, verb)
Permission = tuple[str, str, str]


def granted(cluster_role: Mapping[str, Any]) -> set[Permission]:
    """Every (group, resource, verb) a ClusterRole's rules name; wildcards are kept as '*'."""
    permissions: set[Permission] = set()
    for rule in cluster_role.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    permissions.add((str(group), str(resource), str(verb)))
    return permissions


@dataclass
class Usage:
    """What one user asked the API server for: allowed and refused resource requests."""

    used: set[Permission] = field(default_factory=set)
    refused: set[Permission] = field(default_factory=set)


def usage_from_audit(lines: Iterable[str], username: str) -> Usage:
    """Read JSON audit events (one per line) of `username`'s resource requests."""
    usage = Usage()
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if (event.get("user") or {}).get("username") != username or event.get("stage") != "ResponseComplete":
            continue
        ref = event.get("objectRef") or {}
        if not ref.get("resource"):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        permission = (str(ref.get("apiGroup") or ""), resource, str(event.get("verb")))
        # Only the authorizer's verdict counts: admission also answers 403 (a namespace being deleted,
        # a service account not made yet), and that is no verdict on the ClusterRole.
        decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
        (usage.refused if decision == "forbid" else usage.used).add(permission)
    return usage


def usage_from_audit_file(path: Path, username: str) -> Usage:
    with path.open() as lines:
        return usage_from_audit(lines, username)


def unused(grants: set[Permission], usage: Usage) -> set[Permission]:
    """Granted permissions that no request used (wildcard grants are never reported)."""
    return {g for g in grants if "*" not in g and g not in usage.used}


def format_permissions(permissions: Iterable[Permission]) -> list[str]:
    by_resource: dict[tuple[str, str], list[str]] = {}
    for group, resource, verb in sorted(permissions):
        by_resource.setdefault((group, resource), []).append(verb)
    return [
        f"{group or 'core'}/{resource}: {', '.join(verbs)}"
        for (group, resource), verbs in by_resource.items()
    ]
