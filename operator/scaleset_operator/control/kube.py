"""A thin synchronous REST layer over the official client: JSON in, JSON out, errors as ApiError."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# What a request may do without asking the fence: it changes nothing.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class ApiError(Exception):
    """An API server refusal, kept whole so callers can tell 404 from 409 from 422.

    `causes` are the Status's details.causes as (type, message) pairs: a refused eviction names the
    PodDisruptionBudget in a cause of type DisruptionBudget. `retry_after` is the Retry-After the server
    sent (429, 503), in seconds; `verb` and `target` say what was asked ("create", "pods/web-3"), so a
    refusal can be reported naming its object.
    """

    status: int
    reason: str
    message: str
    causes: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None
    verb: str = ""
    target: str = ""

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


class Fenced(Exception):
    """A write not sent: this replica is not sure it holds the Lease. The pass ends and a later one,
    on whichever replica then leads, reads everything again."""


class WriteFence(Protocol):
    """What a write asks before it is sent (scaleset_operator.leader.Leadership is one)."""

    def writing(self) -> AbstractContextManager[float]:
        """Admit one write for the `with` block, yielding the seconds it may take; raise Fenced
        when no write may be sent now."""


class _RetryReads(urllib3.Retry):
    """urllib3's retries, for reads only: a write is sent once, by the call that asked the fence (a
    retry could go out after the fence closed), and its failure goes back to the pass."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if method is not None and method.upper() not in READ_METHODS:
            # total=False: urllib3 raises the error as it came.
            return self.new(total=False).increment(method, url, response, error, _pool, _stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        return method.upper() in READ_METHODS and super().is_retry(method, status_code, has_retry_after)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds (the API server sends whole seconds; an HTTP date is not used by it)."""
    value = (headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error(status: int, reason: str, raw: Any, headers: Any = None) -> ApiError:
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    causes: tuple[tuple[str, str], ...] = ()
    try:
        body = json.loads(raw or "{}")
        reason = body.get("reason", reason)
        message = body.get("message", message)
        causes = tuple(
            (str(c.get("reason") or c.get("type") or ""), str(c.get("message") or ""))
            for c in (body.get("details") or {}).get("causes") or []
        )
    except (TypeError, ValueError, AttributeError):
        pass
    return ApiError(status, reason, message, causes, retry_after=_retry_after(headers))


def _from_status(status: int, raw: bytes | str | None, reason: str = "", headers: Any = None) -> ApiError:
    return _error(status, reason, raw, headers)


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
    """Every call the control layer makes goes through here; one place to log, retry, fence and fake.

    With a `fence`, every write (create, update, patch, delete) asks it first and is not sent when it
    refuses (Fenced); an admitted write's timeout is capped at the time the fence has left.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        request_timeout: float = 30.0,
        *,
        fence: WriteFence | None = None,
    ) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        self.fence = fence

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | None = None,
        context: str | None = None,
        *,
        user_agent: str | None = None,
        fence: WriteFence | None = None,
    ) -> Kube:
        """A client of the cluster of `path` (in-cluster credentials first when None, then
        $KUBECONFIG), naming itself `user_agent` in the API server's audit log."""
        configuration = kubernetes.client.Configuration()
        configuration.retries = _RetryReads(3)
        api_client = None
        if path is None:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                api_client = kubernetes.client.ApiClient(configuration)
            except kubernetes.config.ConfigException:
                pass
        if api_client is None:
            api_client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
        if user_agent:
            api_client.user_agent = user_agent
        return cls(api_client, fence=fence)

    @property
    def user_agent(self) -> str:
        return str(self.api_client.user_agent)

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
        """One request; `timeout` (seconds, the whole request) defaults to the client's."""
        limit = self.request_timeout if timeout is None else timeout
        if self.fence is None or method.upper() in READ_METHODS:
            return self._send(method, path, body, query, content_type, limit)
        try:
            with self.fence.writing() as remaining:
                return self._send(method, path, body, query, content_type, min(limit, remaining))
        except Fenced:
            metrics.api_request(method, query, "fenced")
            raise

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any] | None,
        content_type: str,
        timeout: float,
    ) -> dict[str, Any]:
        # The generated client (kubernetes >= 37) splits a call into serialise, send and read;
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
                http_method, url, header_params=headers, body=payload, _request_timeout=timeout
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

    def update(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Replace an object; 409 when its metadata.resourceVersion is not the stored one."""
        return self.request("PUT", path, body=body, timeout=timeout)

    def get(self, path: str, *, timeout: float | None = None) -> dict[str, Any]:
        return self.request("GET", path, timeout=timeout)

    def get_or_none(self, path: str, *, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return self.get(path, timeout=timeout)
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

    def create(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        return self.request("POST", path, body=body, timeout=timeout)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete_exactly(self, path: str, uid: str | None, resource_version: str | None) -> bool:
        """Delete the object only as it was read: uid and resourceVersion preconditions. False when it is
        gone already; a 409 (it changed, or another object holds the name now) is raised, not swallowed."""
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        try:
            self.request("DELETE", path, body=body)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def evict(self, namespace: str, name: str, uid: str | None, resource_version: str | None) -> bool:
        """Evict a pod (policy/v1 Eviction), so that the PodDisruptionBudgets that select it are honoured,
        with uid and resourceVersion preconditions. False when it is gone already; a refusal (429 from a
        budget, 409 from a precondition) is raised."""
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": {"preconditions": preconditions},
        }
        try:
            self.request("POST", core_path("pods", namespace, name, "eviction"), body=body)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

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
