"""A fake of the API for tests of control/: it records every request, answers each write with what it was
sent (or with a stored object for a GET), and raises the refusals a test injects, in order."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaleset_operator.control.kube import ApiError, Kube


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any
    query: Mapping[str, Any] | None


class FakeKube(Kube):
    """`objects` answers GETs by path; `refuse(method, path, status)` makes the next such request fail.

    A PATCH or PUT of a path that holds an object merges the body's metadata and status into it and
    bumps its resourceVersion, as the API server does; any other write answers with its body.
    """

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None) -> None:
        self.objects = {path: copy.deepcopy(obj) for path, obj in (objects or {}).items()}
        self.calls: list[Call] = []
        self._refusals: list[tuple[str, str, int]] = []

    def refuse(self, method: str, path_end: str, status: int, times: int = 1) -> FakeKube:
        self._refusals += [(method, path_end, status)] * times
        return self

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method not in ("GET",)]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        self.calls.append(Call(method, path, copy.deepcopy(body), query))
        for index, (verb, path_end, status) in enumerate(self._refusals):
            if verb == method and path.endswith(path_end):
                del self._refusals[index]
                raise ApiError(status, f"Refused{status}", f"injected {status}", verb=method, target=path)
        if method == "GET":
            stored = self.objects.get(path)
            if stored is None:
                raise ApiError(404, "NotFound", f"{path} not found")
            return copy.deepcopy(stored)
        if method in ("PATCH", "PUT"):
            return self._update(path, body)
        return copy.deepcopy(body) if isinstance(body, dict) and method != "DELETE" else {}

    def _update(self, path: str, body: Any) -> dict[str, Any]:
        base = path.removesuffix("/status")
        stored = self.objects.get(base)
        if stored is None or not isinstance(body, dict):
            return copy.deepcopy(body) if isinstance(body, dict) else {}
        metadata = stored.setdefault("metadata", {})
        metadata["resourceVersion"] = str(int(metadata.get("resourceVersion") or 0) + 1)
        if "status" in body:
            stored["status"] = merged(stored.get("status") or {}, body["status"] or {})
        return copy.deepcopy(stored)


def merged(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) applied."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
