"""A ScaleSet's status is written from one place, control/status_updater.py (as StatefulSet keeps its
status writes in stateful_set_status_updater.go): no other module of the package addresses the status
subresource, the only way to write it once the CRD declares `subresources.status`."""

from __future__ import annotations

import ast
from pathlib import Path

import scaleset_operator

PACKAGE = Path(scaleset_operator.__file__).parent
ALLOWED = {"control/status_updater.py"}


def status_writes_in(source: str) -> list[int]:
    """The lines that address a status subresource: a `*_path(...)` call (fleet_path, group_path,
    core_path) given "status" as its subresource, a path string ending in "/status", or kopf's
    `patch.status` / `patch["status"]` (which kopf sends to the status subresource)."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arguments = [*node.args, *(k.value for k in node.keywords if k.arg == "sub")]
            if name.endswith("_path") and any(_is(a, "status") for a in arguments):
                lines.add(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.endswith("/status") or "/status?" in node.value:
                lines.add(node.lineno)
        elif _kopf_status_patch(node):
            lines.add(node.lineno)
    return sorted(lines)


def _kopf_status_patch(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "status" and _named(node.value, "patch")
    return isinstance(node, ast.Subscript) and _named(node.value, "patch") and _is(node.slice, "status")


def _is(node: ast.AST, value: str) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


def _named(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def test_no_module_but_the_status_updater_writes_a_scalesets_status() -> None:
    found = {
        module: lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (module := str(path.relative_to(PACKAGE))) not in ALLOWED
        and (lines := status_writes_in(path.read_text()))
    }
    assert found == {}


def test_the_status_updater_is_seen_writing_status() -> None:
    """The scan recognises the one writer's own call, so it would recognise that call anywhere else."""
    assert status_writes_in((PACKAGE / "control/status_updater.py").read_text()) != []


def test_a_planted_status_write_is_caught() -> None:
    planted = (
        "def f(self, kube, patch, name):\n"
        "    self.kube.patch(fleet_path('scalesets', 'ns', name, 'status'), {})\n"
        "    kube.patch(fleet_path('scalesets', 'ns', name, sub='status'), {})\n"
        "    kube.request('PUT', f'/apis/fleet.scaleset.dev/v1/namespaces/ns/scalesets/{name}/status', {})\n"
        "    kube.patch(fleet_path('scalesets', 'ns', name) + '/status', {})\n"
        "    patch.status['upgrade'] = {}\n"
        "    patch['status'] = {}\n"
        "    kube.patch(fleet_path('scalesets', 'ns', name), {'spec': {}})\n"
        "    self.status.write(snapshot, {'status': {}})\n"
        "    return (scaleset.get('status') or {}).get('conditions')\n"
    )
    assert status_writes_in(planted) == [2, 3, 4, 5, 6, 7]
