"""The pass reads the API only through control/reader.py: no other module of control/ calls a read
verb (get, get_or_none, list, or a GET request) on a kube client."""

from __future__ import annotations

import ast
from pathlib import Path

import scaleset_operator.control as control

READS = {"get", "get_or_none", "list"}
# kube.py is the client itself; reader.py is where every read is.
ALLOWED = {"kube.py", "reader.py"}


def reads_in(source: str) -> list[int]:
    """The lines where `<...>.kube.<read>(...)` or `kube.<read>(...)`, or `kube.request("GET", ...)`, is called."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        named = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
        if named != "kube":
            continue
        verb = node.func.attr
        first = node.args[0] if node.args else None
        is_get = verb == "request" and isinstance(first, ast.Constant) and first.value == "GET"
        if verb in READS or is_get:
            lines.append(node.lineno)
    return lines


def test_no_module_of_control_but_the_reader_reads_the_api() -> None:
    found = {
        path.name: lines
        for path in sorted(Path(control.__file__).parent.glob("*.py"))
        if path.name not in ALLOWED and (lines := reads_in(path.read_text()))
    }
    assert found == {}


def test_a_planted_read_is_caught() -> None:
    planted = (
        "def f(self, kube):\n"
        "    self.kube.list('/api/v1/nodes')\n"
        "    kube.get_or_none('/x')\n"
        "    self.kube.request('GET', '/y')\n"
        "    self.kube.patch('/z', {})\n"
    )
    assert reads_in(planted) == [2, 3, 4]
