"""API errors as Kubernetes Status objects, raised anywhere in kubesim and rendered by the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One StatusCause: which field is wrong and why (reason as in metav1.CauseType)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


@dataclass
class ApiError(Exception):
    """An error the API server answers with; `status()` is the body Kubernetes would send."""

    code: int
    reason: str
    message: str
    kind: str | None = None
    name: str | None = None
    group: str | None = None
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int | None = None

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:  # the core group is omitted, as Kubernetes' omitempty does
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes
            ]
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    what = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{what} "{name}" not found', kind=resource, name=name, group=group)


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    what = f"{resource}.{group}" if group else resource
    return ApiError(
        409, "AlreadyExists", f'{what} "{name}" already exists', kind=resource, name=name, group=group
    )


def conflict(resource: str, name: str, group: str = "") -> ApiError:
    what = f"{resource}.{group}" if group else resource
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=resource,
        name=name,
        group=group,
    )


def precondition_failed(
    what: str, wanted: Any, actual: Any, resource: str, name: str, group: str = ""
) -> ApiError:
    """409 Conflict for a delete or update whose precondition (`what`: UID, ResourceVersion) the object fails."""
    return ApiError(
        409,
        "Conflict",
        f"Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}",
        kind=resource,
        name=name,
        group=group,
    )


def name_mismatch(body_name: Any, url_name: str) -> ApiError:
    """400 for a body naming another object than the URL."""
    return bad_request(
        f"the name of the object ({body_name}) does not match the name on the URL ({url_name})"
    )


def gone(message: str = "too old resource version") -> ApiError:
    return ApiError(410, "Expired", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 Invalid, with the message format of the API server: `Kind.group "name" is invalid: field: msg, ...`
    (`Kind` alone in the core group)."""
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes) or "invalid object"
    if len(causes) > 1:
        summary = "[" + summary + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {summary}'
        if group
        else f'{kind} "{name}" is invalid: {summary}',
        kind=kind,
        name=name,
        group=group,
        causes=causes,
    )
