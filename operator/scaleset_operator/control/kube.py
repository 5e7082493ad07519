"""A thin synchronous REST layer over the official client: JSON in, JSON out, errors as ApiError."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass
class ApiError(Exception):
    """An API server refusal, kept whole so callers can tell 404 from 409 from 422.

    `retry_after` is the Retry-After the server sent (429, 503), in seconds; `verb` and `target` say
    what was asked ("create", "pods/web-3"), so a refusal can be reported naming its object.
    """

    status: int
    reason: str
    message: str
    retry_after: float | None = None
    verb: str = ""
    target: str = ""

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds (the API server sends whole seconds; an HTTP date is not used by it)."""
    value = (headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _from_status(status: int, raw: bytes | str | None, reason: str = "", headers: Any = None) -> ApiError:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    message = text
    try:
        body = json.loads(text or "{}")
        reason = body.get("reason", reason)
        message = body.get("message", message)
    except (AttributeError, TypeError, ValueError):
        pass
    return ApiError(status, reason, message, retry_after=_retry_after(headers))


def _target(method: str, path: str, body: Any) -> tuple[str, str]:
    """The verb and object of a request, as `create` and `pods/web-3`, for messages about a refusal."""
    parts = [part for part in path.split("/") if part]
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[3:] if parts[:1] == ["apis"] else parts[2:]
    name = parts[1] if len(parts) > 1 else ((body or {}).get("metadata") or {}).get("name", "")
    resource = parts[0] if parts else ""
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method.upper(), "get"
    )
    return verb, f"{resource}/{name}" if name else resource


def core_path(
    resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    return _path("/api/v1", resource, namespace, name, sub)


def group_path(
    group: str,
    version: str,
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
) -> str:
    return _path(f"/apis/{group}/{version}", resource, namespace, name, sub)


def fleet_path(
    resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    return group_path(GROUP, VERSION, resource, namespace, name, sub)


def _path(prefix: str, resource: str, namespace: str | None, name: str | None, sub: str | None) -> str:
    parts = [prefix]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts.append(resource)
    if name is not None:
        parts.append(name)
    if sub is not None:
        parts.append(sub)
    return "/".join(parts)


class Kube:
    """Every call the control layer makes goes through here; one place to log, retry and fake."""

    def __init__(self, api_client: kubernetes.client.ApiClient, request_timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Kube:
        if path is None:
            try:
                kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
                return cls(kubernetes.client.ApiClient())
            except kubernetes.config.ConfigException:
                pass
        return cls(kubernetes.config.new_client_from_config(config_file=path, context=context))  # type: ignore[no-untyped-call]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        # The generated client (kubernetes >= 35) splits a call into serialise, send and read;
        # errors come back as a status code rather than an exception, so they are raised here.
        serialized = self.api_client.param_serialize(
            method,
            path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        http_method, url, headers, payload = serialized[0], serialized[1], serialized[2], serialized[3]
        try:
            response = self.api_client.call_api(
                http_method, url, header_params=headers, body=payload, _request_timeout=self.request_timeout
            )
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            metrics.api_request(method, query, exc.status or "error")
            error = _from_status(int(exc.status or 0), exc.body, exc.reason or "", exc.headers)
        except Exception:
            metrics.api_request(method, query, "error")
            raise
        else:
            raw = response.data
            metrics.api_request(method, query, response.status)
            if 200 <= response.status <= 299:
                result: dict[str, Any] = json.loads(raw) if raw else {}
                return result
            error = _from_status(response.status, raw, headers=response.headers)
        error.verb, error.target = _target(method, path, body if isinstance(body, dict) else None)
        raise error

    def update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace an object; 409 when its metadata.resourceVersion is not the stored one."""
        return self.request("PUT", path, body=body)

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, path: str, label_selector: str | None = None, page: int = 500) -> list[dict[str, Any]]:
        """Every object of a collection, read in pages of `page`, as one consistent list.

        A continue token outlives etcd's compaction only so long: past it the API server answers 410
        ("The provided continue parameter is too old"), and the pages read so far are dropped and the
        list is read again whole, without pages, as client-go's pager does (FullListIfExpired), so the
        result is never a mix of two moments.
        """
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = {"labelSelector": label_selector, "limit": page, "continue": token}
            try:
                chunk = self.request("GET", path, query=query)
            except ApiError as error:
                if error.status != 410 or token is None:
                    raise
                whole = self.request("GET", path, query={"labelSelector": label_selector})
                return list(whole.get("items") or [])
            items.extend(chunk.get("items") or [])
            token = (chunk.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, preconditions_uid: str | None = None, propagation: str | None = None) -> bool:
        """Delete; False when it was already gone (deleting twice is not an error for a reconciler)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if preconditions_uid:
            body["preconditions"] = {"uid": preconditions_uid}
        if propagation:
            body["propagationPolicy"] = propagation
        try:
            self.request("DELETE", path, body=body)
        except ApiError as error:
            if error.status in (404, 409):
                return False
            raise
        return True
