"""Reading RBAC verb usage from audit events: what the e2e-real suite reports about manifests/rbac.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tests.integration.rbac_usage import format_permissions, granted, unused, usage_from_audit

ROOT = Path(__file__).resolve().parents[2]
USER = "system:serviceaccount:scaleset-system:scaleset-operator"


def _event(verb: str, resource: str, code: int, group: str = "", sub: str = "", user: str = USER) -> str:
    ref = {"resource": resource, "apiGroup": group} | ({"subresource": sub} if sub else {})
    decision = "forbid" if code == 403 else "allow"
    return json.dumps(
        {
            "stage": "ResponseComplete",
            "verb": verb,
            "user": {"username": user},
            "objectRef": ref,
            "responseStatus": {"code": code},
            "annotations": {"authorization.k8s.io/decision": decision},
        }
    )


def test_allowed_and_refused_requests_are_told_apart() -> None:
    lines = [
        _event("list", "pods", 200),
        _event("patch", "scalesets", 200, group="fleet.scaleset.dev", sub="status"),
        _event("delete", "nodes", 403),
        _event("get", "secrets", 200, user="someone-else"),
        "",
    ]
    usage = usage_from_audit(lines, USER)
    assert usage.used == {("", "pods", "list"), ("fleet.scaleset.dev", "scalesets/status", "patch")}
    assert usage.refused == {("", "nodes", "delete")}


def test_admission_refusals_are_not_counted_as_missing_verbs() -> None:
    event = json.loads(_event("create", "pods", 200))
    event["responseStatus"] = {"code": 403, "reason": "Forbidden"}  # e.g. the namespace is being deleted
    usage = usage_from_audit([json.dumps(event)], USER)
    assert usage.refused == set()
    assert usage.used == {("", "pods", "create")}


def test_verbs_granted_but_never_used_are_reported() -> None:
    role = {"rules": [{"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get", "patch"]}]}
    usage = usage_from_audit([_event("get", "pods", 200), _event("patch", "pods", 404)], USER)
    assert unused(granted(role), usage) == {("", "pods/status", "get"), ("", "pods/status", "patch")}
    assert format_permissions(unused(granted(role), usage)) == ["core/pods/status: get, patch"]


def test_the_operator_cluster_role_parses() -> None:
    role = next(
        d
        for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    )
    assert ("", "pods", "create") in granted(role)
