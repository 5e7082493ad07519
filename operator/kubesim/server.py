"""The kubesim API server: Kubernetes REST semantics over HTTP (aiohttp) in front of the in-memory store."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from kubesim import controllers, listing
from kubesim.errors import ApiError, Cause, bad_request, invalid
from kubesim.faults import FaultInjector
from kubesim.protobuf import PROTOBUF, decode_protobuf
from kubesim.resources import CRD_GROUP, ResourceType, table_cells
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.store import PATCH_APPLY, PATCH_TYPES, Store
from kubesim.verbs import binding, create, deletion, scale, update
from kubesim.verbs import patch as patch_verb
from kubesim.watch import Watcher, WatchEvent

log = logging.getLogger("kubesim.server")

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim"}
TABLE_V1 = "application/json;as=Table;v=v1;g=meta.k8s.io"
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
PARTIAL_METADATA = "PartialObjectMetadata"
SUBRESOURCE_VERBS = ["get", "patch", "update"]
# How many queued watch events are written in one chunk: fewer, larger writes keep fan-out cheap.
WATCH_BATCH = 500


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(f"kubesim.{module}")
    except ImportError:
        return None


@dataclass(frozen=True)
class Route:
    """A parsed resource request path: which type, namespace, object and subresource it names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    legacy_watch: bool = False


@dataclass(frozen=True)
class Negotiated:
    """The representation the client asked for in its Accept header."""

    as_kind: str | None  # "Table", "PartialObjectMetadata", "PartialObjectMetadataList" or None
    content_type: str


def _negotiate(accept: str) -> Negotiated:
    for clause in (c.strip() for c in accept.split(",")):
        params = dict(
            (p.split("=", 1)[0].strip(), p.split("=", 1)[1].strip())
            for p in clause.split(";")[1:]
            if "=" in p
        )
        as_kind = params.get("as")
        if as_kind == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            # The API server answers a Table as plain application/json (the body's kind says Table).
            return Negotiated("Table", "application/json")
        if as_kind in (PARTIAL_METADATA, PARTIAL_METADATA + "List") and params.get("g") == "meta.k8s.io":
            return Negotiated(
                as_kind, f"application/json;as={as_kind};v={params.get('v', 'v1')};g=meta.k8s.io"
            )
        if as_kind is None and clause.split(";")[0].strip() in (
            "application/json",
            "*/*",
            "application/*",
            "",
        ):
            return Negotiated(None, "application/json")
    return Negotiated(None, "application/json")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _status_success(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta.get("name", ""),
            "group": rt.group,
            "kind": rt.plural,
            "uid": meta.get("uid", ""),
        },
    }


def _page_not_found() -> web.Response:
    """What the API server answers under /apis for a group it does not serve, and for a path outside
    /api and /apis: plain text, no Status."""
    return web.Response(
        text="404 page not found\n",
        status=404,
        content_type="text/plain",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _minimal_openapi(parts: list[str], registry: Any) -> dict[str, Any]:
    """Schema-free documents, served when kubesim.openapi is absent: clients then skip validation."""
    info = {"title": "Kubernetes", "version": KUBERNETES_VERSION["gitVersion"]}
    if parts == ["v3"]:
        index: dict[str, Any] = {}
        for group in registry.groups():
            for version in group.versions:
                path = f"apis/{group.name}/{version}" if group.name else f"api/{version}"
                index[path] = {"serverRelativeURL": f"/openapi/v3/{path}"}
        return {"paths": index}
    if len(parts) >= 3 and parts[0] == "v3":
        rest = parts[1:]
        group, version = ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2] if len(rest) > 2 else "")
        paths: dict[str, Any] = {}
        # One PATCH operation per kind declaring the fieldValidation parameter: that is how kubectl
        # learns the server validates fields itself and needs no client-side schema.
        for rt in registry.group_versions(group, version):
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            scope = "/namespaces/{namespace}" if rt.namespaced else ""
            paths[f"{prefix}{scope}/{rt.plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rt.kind},
                    "parameters": [
                        {"name": name, "in": "query", "schema": {"type": "string"}}
                        for name in ("dryRun", "fieldManager", "fieldValidation", "force")
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        if not paths:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": {}}}
    raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": PARTIAL_METADATA, "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


class ApiServer:
    """An aiohttp application serving the Kubernetes API from a Store.

    Watches run in their own handler tasks, each reading its own queue, so a slow client holds up
    nobody else; bookmarks, timeouts and fault-injected disconnects end or mark streams as the real
    API server does.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        faults: FaultInjector | None = None,
        bookmark_interval: float = 60.0,
        min_request_timeout: float = 1800.0,
        seed: int | None = None,
    ) -> None:
        self.store = store or Store()
        controllers.start(self.store)
        self.faults = faults or FaultInjector()
        self.bookmark_interval = bookmark_interval
        self.min_request_timeout = min_request_timeout
        self._random = random.Random(seed)
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background_wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.requests = 0
        self.scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    # -----------------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Listen on host:port (0 picks a free port), HTTPS with `ssl_context`; returns the base URL."""
        self._loop = asyncio.get_running_loop()
        self._background_wakeup = asyncio.Event()
        self.store.on_background = self._wake_background
        self._tasks.append(asyncio.create_task(self._run_background(), name="kubesim-controllers"))
        self._tasks.append(asyncio.create_task(self._run_disconnects(), name="kubesim-watch-disconnects"))
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context is not None else "http"
        await self._site.start()
        server = self._site._server
        assert server is not None and isinstance(server, asyncio.base_events.Server)
        sockname = server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self.store.run_background()
        return self.url

    async def stop(self) -> None:
        self.store.close_watchers()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.store.on_background = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _wake_background(self) -> None:
        loop, event = self._loop, self._background_wakeup
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def _run_background(self) -> None:
        """The controller manager: garbage collection, namespace and CRD cleanup, after each write."""
        assert self._background_wakeup is not None
        while True:
            await self._background_wakeup.wait()
            self._background_wakeup.clear()
            try:
                self.store.run_background()
            except Exception:  # a controller bug must not stop the others
                log.exception("kubesim background work failed")

    async def _run_disconnects(self) -> None:
        """Close every watch stream every `watch_disconnect_every` seconds, when fault injection asks."""
        while True:
            period = self.faults.plan.watch_disconnect_every
            if not period:
                await asyncio.sleep(0.2)
                continue
            version = self.faults.version
            deadline = time.monotonic() + period
            while time.monotonic() < deadline and self.faults.version == version:
                await asyncio.sleep(min(0.1, period))
            if self.faults.version == version:
                self.store.close_watchers()

    # -----------------------------------------------------------------------------------------------------
    # Dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        try:
            return await self._route(request)
        except ApiError as error:
            return self._error_response(error)
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
            return self._error_response(bad_request(f"the body of the request could not be decoded: {error}"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as error:
            log.exception("kubesim failed to serve %s %s", request.method, request.path)
            return self._error_response(ApiError(500, "InternalError", f"Internal error occurred: {error}"))

    def _error_response(self, error: ApiError) -> web.Response:
        headers = {}
        if error.retry_after_seconds is not None:
            headers["Retry-After"] = str(error.retry_after_seconds)
        return web.json_response(error.status(), status=error.code, headers=headers)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if not parts:
            return web.json_response({"paths": self._paths()})
        head = parts[0]
        if head in ("healthz", "livez", "readyz") and method == "GET":
            return web.Response(text="ok", content_type="text/plain")
        if head == "version" and len(parts) == 1:
            return web.json_response(self._version())
        if head == "openapi":
            return self._openapi(parts[1:])
        if head == "api":
            if len(parts) == 1:
                return self._discovery_root(request, core=True)
            if len(parts) == 2:
                return self._resource_list(request, "", parts[1])
            return await self._resource(request, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return self._discovery_root(request, core=False)
            if not any(g.name == parts[1] for g in self.store.registry.groups()):
                return _page_not_found()
            if len(parts) == 2:
                return self._api_group(parts[1])
            if len(parts) == 3:
                return self._resource_list(request, parts[1], parts[2])
            return await self._resource(request, parts[1], parts[2], parts[3:])
        return _page_not_found()

    # -----------------------------------------------------------------------------------------------------
    # Discovery

    def _version(self) -> dict[str, str]:
        return {
            **KUBERNETES_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2024-12-11T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _paths(self) -> list[str]:
        paths = {
            "/api",
            "/api/v1",
            "/apis",
            "/healthz",
            "/livez",
            "/readyz",
            "/version",
            "/openapi/v2",
            "/openapi/v3",
        }
        for group in self.store.registry.groups():
            if group.name:
                paths.add(f"/apis/{group.name}")
                paths.update(f"/apis/{group.name}/{v}" for v in group.versions)
        return sorted(paths)

    def _group_json(self, name: str, versions: tuple[str, ...]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": entries, "preferredVersion": entries[0]}

    def _discovery_root(self, request: web.Request, *, core: bool) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "as=APIGroupDiscoveryList" in accept:
            version = (
                "v2"
                if DISCOVERY_V2.replace(" ", "") in accept.replace(" ", "") or "v=v2;" in accept
                else "v2beta1"
            )
            body = self._aggregated_discovery(core=core, version=version)
            content_type = DISCOVERY_V2 if version == "v2" else DISCOVERY_V2BETA1
            return web.Response(body=json.dumps(body).encode(), headers={"Content-Type": content_type})
        if core:
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                    ],
                }
            )
        groups = [self._group_json(g.name, g.versions) for g in self.store.registry.groups() if g.name]
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    def _aggregated_discovery(self, *, core: bool, version: str) -> dict[str, Any]:
        items = []
        for group in self.store.registry.groups():
            if bool(group.name) == core:
                continue
            versions = []
            for v in group.versions:
                resources = []
                for rt in self.store.registry.group_versions(group.name, v):
                    entry: dict[str, Any] = {
                        "resource": rt.plural,
                        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                        "scope": "Namespaced" if rt.namespaced else "Cluster",
                        "singularResource": rt.singular,
                        "verbs": sorted(rt.verbs),
                    }
                    if rt.short_names:
                        entry["shortNames"] = list(rt.short_names)
                    if rt.categories:
                        entry["categories"] = list(rt.categories)
                    subresources = [
                        {
                            "subresource": sub,
                            "responseKind": self._subresource_kind(rt, sub),
                            "verbs": self._subresource_verbs(sub),
                        }
                        for sub in rt.subresources
                    ]
                    if subresources:
                        entry["subresources"] = subresources
                    resources.append(entry)
                versions.append({"version": v, "resources": resources, "freshness": "Current"})
            # The core group has no name, and the API server then leaves metadata empty.
            metadata = {"name": group.name, "creationTimestamp": None} if group.name else {}
            items.append({"metadata": metadata, "versions": versions})
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {},
            "items": items,
        }

    def _subresource_kind(self, rt: ResourceType, sub: str) -> dict[str, str]:
        if sub == "scale":
            return {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        if sub == "binding":
            return {"group": "", "version": "v1", "kind": "Binding"}
        if sub == "eviction":
            return {"group": "policy", "version": "v1", "kind": "Eviction"}
        return {"group": rt.group, "version": rt.version, "kind": rt.kind}

    def _subresource_verbs(self, sub: str) -> list[str]:
        return ["create"] if sub in ("binding", "eviction") else list(SUBRESOURCE_VERBS)

    def _api_group(self, group: str) -> web.Response:
        for g in self.store.registry.groups():
            if g.name == group and group:
                return web.json_response(
                    {"kind": "APIGroup", "apiVersion": "v1", **self._group_json(g.name, g.versions)}
                )
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _resource_list(self, request: web.Request, group: str, version: str) -> web.Response:
        types = self.store.registry.group_versions(group, version)
        if not types:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resources: list[dict[str, Any]] = []
        for rt in types:
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": sorted(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in rt.subresources:
                kind = self._subresource_kind(rt, sub)
                sub_entry: dict[str, Any] = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": kind["kind"],
                    "verbs": self._subresource_verbs(sub),
                }
                if kind["group"] != rt.group or kind["version"] != rt.version:
                    sub_entry["group"], sub_entry["version"] = kind["group"], kind["version"]
                resources.append(sub_entry)
        group_version = f"{group}/{version}" if group else version
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": resources,
            }
        )

    def _openapi(self, parts: list[str]) -> web.Response:
        openapi = _optional("openapi")
        if openapi is None:
            return self._json(_minimal_openapi(parts, self.store.registry), 200, "application/json")
        registry = self.store.registry
        if parts == ["v2"]:
            body = openapi.openapi_v2(registry)
        elif parts == ["v3"]:
            body = openapi.openapi_v3_index(registry)
        elif len(parts) >= 3 and parts[0] == "v3":
            rest = parts[1:]
            if rest[0] == "api" and len(rest) == 2:
                group, version = "", rest[1]
            elif rest[0] == "apis" and len(rest) == 3:
                group, version = rest[1], rest[2]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            body = openapi.openapi_v3_group_version(group, version, registry)
            if body is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    # -----------------------------------------------------------------------------------------------------
    # Resources

    def _parse_route(self, group: str, version: str, rest: list[str]) -> Route:
        registry = self.store.registry
        legacy_watch = False
        if rest and rest[0] == "watch":
            legacy_watch = True
            rest = rest[1:]
        not_found = ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            raise not_found
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = registry.get(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                if len(rest) > 5:
                    raise not_found
                return Route(
                    candidate,
                    rest[1],
                    rest[3] if len(rest) > 3 else None,
                    rest[4] if len(rest) > 4 else None,
                    legacy_watch,
                )
        rt = registry.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise not_found
        return Route(
            rt, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None, legacy_watch
        )

    async def _resource(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        route = self._parse_route(group, version, rest)
        rt, method, query = route.rt, request.method, request.query
        if route.name is None:
            verb = {
                "GET": "watch" if route.legacy_watch or _truthy(query.get("watch")) else "list",
                "POST": "create",
                "DELETE": "deletecollection",
            }.get(method)
        else:
            verb = {
                "GET": "watch" if route.legacy_watch else "get",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
                "POST": "create",
            }.get(method)
        if verb is None or (route.name is not None and method == "POST" and route.subresource is None):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if route.subresource is not None and route.subresource not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource is not None and verb not in self._subresource_verbs(route.subresource):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        delay = self.faults.delay_for(verb, rt.plural)
        if delay > 0:
            await asyncio.sleep(delay)
        fault = self.faults.error_for(verb, rt.plural)
        if fault is not None:
            raise fault
        negotiated = _negotiate(request.headers.get("Accept", ""))
        handler: Callable[[web.Request, Route, Negotiated], Awaitable[web.StreamResponse]]
        if route.subresource == "scale":
            handler = self._scale
        elif route.subresource in ("binding", "eviction"):
            handler = self._pod_action
        else:
            handler = {
                "list": self._list,
                "watch": self._watch,
                "create": self._create,
                "deletecollection": self._delete_collection,
                "get": self._get,
                "update": self._update,
                "patch": self._patch,
                "delete": self._delete,
            }[verb]
        return await handler(request, route, negotiated)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            raise bad_request("the body of the request was empty")
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if content_type in ("application/yaml", "application/apply-patch+yaml") or content_type.endswith(
            "yaml"
        ):
            return yaml.safe_load(raw.decode())
        if content_type == PROTOBUF:
            return decode_protobuf(raw)
        return json.loads(raw)

    def _respond(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        negotiated: Negotiated,
        status: int = 200,
        warnings: list[str] | None = None,
        request: web.Request | None = None,
    ) -> web.Response:
        headers = self._warning_headers(warnings)
        if negotiated.as_kind == "Table":
            include = request.query.get("includeObject", "Metadata") if request is not None else "Metadata"
            body: Any = self._table(
                rt, [obj], include, str(obj.get("metadata", {}).get("resourceVersion", ""))
            )
            return self._json(body, status, negotiated.content_type, headers)
        if negotiated.as_kind == PARTIAL_METADATA:
            return self._json(_partial(obj), status, negotiated.content_type, headers)
        return self._json(obj, status, "application/json", headers)

    def _json(
        self, body: Any, status: int, content_type: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return web.Response(
            body=data, status=status, headers={"Content-Type": content_type, **(headers or {})}
        )

    def _warning_headers(self, warnings: list[str] | None) -> dict[str, str]:
        if not warnings:
            return {}
        # aiohttp takes one value per key in a plain dict; several warnings go in one comma-separated header.
        return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)}

    def _namespace_for(self, route: Route) -> str | None:
        return route.namespace if route.rt.namespaced else None

    def _write_options(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        dry_run = query.getall("dryRun", [])
        for value in dry_run:
            if value != "All":
                raise bad_request(f'Invalid dry run value: "{value}"; only "All" is supported')
        validation = query.get("fieldValidation")
        if validation not in (None, "", "Ignore", "Warn", "Strict"):
            raise bad_request(f"fieldValidation must be one of Ignore, Warn, Strict (got {validation})")
        return {
            "dry_run": bool(dry_run),
            "field_manager": query.get("fieldManager") or self._default_manager(request),
            "field_validation": validation or "Warn",
        }

    def _default_manager(self, request: web.Request) -> str:
        """The field manager the API server derives from the User-Agent when the client names none."""
        agent = request.headers.get("User-Agent", "")
        return agent.split("/")[0][:128] if agent else "unknown"

    # -- reads

    async def _get(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        assert route.name is not None
        obj = self.store.get_raw(route.rt, self._namespace_for(route), route.name)
        obj = self.store.present(route.rt, obj)
        if negotiated.as_kind is None:
            return web.Response(body=self.store.encoded(route.rt, obj), content_type="application/json")
        return self._respond(route.rt, obj, negotiated, request=request)

    def _selectors(self, request: web.Request) -> tuple[LabelSelector, FieldSelector]:
        return (
            LabelSelector.parse(request.query.get("labelSelector")),
            FieldSelector.parse(request.query.get("fieldSelector")),
        )

    async def _list(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        query = request.query
        rt = route.rt
        if not rt.namespaced and route.namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        labels, fields = self._selectors(request)
        limit_text = query.get("limit")
        try:
            limit = int(limit_text) if limit_text else None
        except ValueError:
            raise bad_request(f"invalid limit: {limit_text}") from None
        result = listing.list_objects(
            self.store,
            rt,
            self._namespace_for(route),
            labels=labels,
            fields=fields,
            limit=limit if limit and limit > 0 else None,
            continue_token=query.get("continue") or None,
            resource_version=query.get("resourceVersion"),
            resource_version_match=query.get("resourceVersionMatch"),
            copy_items=False,
        )
        list_meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
            if result.remaining is not None:
                list_meta["remainingItemCount"] = result.remaining
        if negotiated.as_kind == "Table":
            table = self._table(
                rt, result.items, query.get("includeObject", "Metadata"), list_meta["resourceVersion"]
            )
            table["metadata"] = list_meta
            return self._json(table, 200, negotiated.content_type)
        if negotiated.as_kind in (PARTIAL_METADATA, PARTIAL_METADATA + "List"):
            body = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": [_partial(o) for o in result.items],
            }
            return self._json(
                body,
                200,
                negotiated.content_type.replace(f"as={PARTIAL_METADATA};", f"as={PARTIAL_METADATA}List;"),
            )
        head = json.dumps(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta}, separators=(",", ":")
        ).encode()
        # Splice the cached JSON of each object into the list: no re-encoding of thousands of objects.
        data = head[:-1] + b',"items":[' + b",".join(listing.list_encoded(self.store, rt, result)) + b"]}"
        return web.Response(body=data, content_type="application/json")

    def _table(self, rt: ResourceType, objs: list[dict[str, Any]], include: str, rv: str) -> dict[str, Any]:
        now = self.store.clock()
        rows = []
        for obj in objs:
            row: dict[str, Any] = {"cells": table_cells(rt, obj, now)}
            if include == "Object":
                row["object"] = obj
            elif include != "None":
                row["object"] = _partial(obj)
            rows.append(row)
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": [c.definition() for c in rt.printer_columns],
            "rows": rows,
        }

    async def _watch(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        query = request.query
        rt = route.rt
        labels, fields = self._selectors(request)
        if route.name is not None:
            fields = FieldSelector.parse(
                ",".join(filter(None, [query.get("fieldSelector"), f"metadata.name={route.name}"]))
            )
        allow_bookmarks = _truthy(query.get("allowWatchBookmarks"))
        send_initial = query.get("sendInitialEvents")
        timeout_text = query.get("timeoutSeconds")
        try:
            timeout = (
                float(timeout_text)
                if timeout_text
                else self.min_request_timeout * (1 + self._random.random())
            )
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {timeout_text}") from None
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": negotiated.content_type if negotiated.as_kind else "application/json",
                "Cache-Control": "no-cache, private",
            },
        )
        response.enable_chunked_encoding()
        try:
            watcher = self.store.watch(
                rt,
                self._namespace_for(route),
                resource_version=query.get("resourceVersion"),
                labels=labels,
                fields=fields,
                send_initial_events=_truthy(send_initial) if send_initial is not None else None,
                allow_bookmarks=allow_bookmarks,
            )
        except ApiError as error:
            if error.code != 410:
                raise
            # As the API server does: the watch is accepted, then ends with an ERROR event carrying the Status.
            await response.prepare(request)
            await response.write(json.dumps({"type": "ERROR", "object": error.status()}).encode() + b"\n")
            await response.write_eof()
            return response
        await response.prepare(request)
        try:
            await self._stream(response, watcher, rt, negotiated, request, timeout, allow_bookmarks)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            watcher.close()
        with contextlib.suppress(ConnectionResetError, ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        watcher: Watcher,
        rt: ResourceType,
        negotiated: Negotiated,
        request: web.Request,
        timeout: float,
        allow_bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        first_table = True
        include = request.query.get("includeObject", "Metadata")
        while True:
            now = loop.time()
            if now >= deadline:
                return
            wait = deadline - now
            if allow_bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            try:
                event = await watcher.next(timeout=wait)
            except TimeoutError:
                if allow_bookmarks and loop.time() >= next_bookmark:
                    await response.write(
                        self._line(
                            rt,
                            WatchEvent("BOOKMARK", obj=self.store.bookmark(rt)),
                            negotiated,
                            include,
                            False,
                        )
                    )
                    next_bookmark = loop.time() + self.bookmark_interval
                continue
            if event is None:
                return
            batch = [event]
            while len(batch) < WATCH_BATCH:
                try:
                    queued = watcher.queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if queued is None:
                    watcher.queue.put_nowait(None)  # end of stream, after this batch
                    break
                batch.append(queued)
            chunks = []
            for item in batch:
                if item.type == "BOOKMARK" and not allow_bookmarks:
                    continue
                chunks.append(self._line(rt, item, negotiated, include, first_table))
                if negotiated.as_kind == "Table" and item.type != "BOOKMARK":
                    first_table = False
            if chunks:
                await response.write(b"".join(chunks))

    def _line(
        self, rt: ResourceType, event: WatchEvent, negotiated: Negotiated, include: str, with_columns: bool
    ) -> bytes:
        if negotiated.as_kind is None:
            if event.change is not None:
                return self.store.encoded_change(rt, event.change, event.type)
            assert event.obj is not None
            obj_json = self.store.encoded(rt, event.obj)
            return b'{"type":"' + event.type.encode() + b'","object":' + obj_json + b"}\n"
        if event.obj is not None:
            obj = event.obj
        else:
            assert event.change is not None
            obj = event.change.obj
        if event.type == "BOOKMARK":
            rendered: dict[str, Any] = obj
            if negotiated.as_kind == "Table":
                rendered = {
                    "kind": "Table",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                    "rows": [],
                }
            elif negotiated.as_kind:
                rendered = _partial(obj)
        elif negotiated.as_kind == "Table":
            obj = self.store.present(rt, obj)
            rendered = self._table(rt, [obj], include, str(obj["metadata"].get("resourceVersion", "")))
            if not with_columns:
                rendered["columnDefinitions"] = []
        else:
            rendered = _partial(self.store.present(rt, obj))
        return json.dumps({"type": event.type, "object": rendered}, separators=(",", ":")).encode() + b"\n"

    # -- writes

    async def _create(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        rt = route.rt
        if rt.namespaced and route.namespace is None:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        body = await self._body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        options = self._write_options(request)
        warnings: list[str] = []
        obj = create.create(self.store, rt, self._namespace_for(route), body, warnings=warnings, **options)
        return self._respond(rt, obj, negotiated, 201, warnings, request)

    async def _update(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        assert route.name is not None
        rt = route.rt
        body = await self._body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        options = self._write_options(request)
        warnings: list[str] = []
        obj = update.update(
            self.store,
            rt,
            self._namespace_for(route),
            route.name,
            body,
            subresource=route.subresource,
            warnings=warnings,
            **options,
        )
        return self._respond(rt, obj, negotiated, 200, warnings, request)

    async def _patch(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        assert route.name is not None
        rt = route.rt
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}",
            )
        patch = await self._body(request)
        options = self._write_options(request)
        if content_type == PATCH_APPLY and not request.query.get("fieldManager"):
            raise bad_request("PATCH requests with the apply content type require fieldManager to be set")
        force = _truthy(request.query.get("force"))
        if force and content_type != PATCH_APPLY:
            raise bad_request("force may only be specified with the apply patch type")
        warnings: list[str] = []
        # An apply patch may create the object, and then the answer is 201 Created, as from a create.
        creates = (
            content_type == PATCH_APPLY
            and not route.subresource
            and not self.store.exists(rt, self._namespace_for(route), route.name)
        )
        obj = patch_verb.patch(
            self.store,
            rt,
            self._namespace_for(route),
            route.name,
            content_type,
            patch,
            subresource=route.subresource,
            force=force,
            warnings=warnings,
            **options,
        )
        return self._respond(rt, obj, negotiated, 201 if creates else 200, warnings, request)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        body: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                parsed = json.loads(raw)
                if not isinstance(parsed, dict):
                    raise bad_request("DeleteOptions must be an object")
                body = parsed
        policy = body.get("propagationPolicy") or query.get("propagationPolicy")
        orphan = body.get("orphanDependents")
        if orphan is None and "orphanDependents" in query:
            orphan = _truthy(query.get("orphanDependents"))
        if orphan is not None and policy:
            raise invalid(
                "DeleteOptions",
                "",
                [
                    Cause(
                        "propagationPolicy",
                        "Invalid value: orphanDependents and propagationPolicy cannot both be set",
                    )
                ],
            )
        if orphan is not None:
            policy = "Orphan" if orphan else "Background"
        grace = body.get("gracePeriodSeconds")
        if grace is None and query.get("gracePeriodSeconds") not in (None, ""):
            try:
                grace = int(query["gracePeriodSeconds"])
            except ValueError:
                raise bad_request("gracePeriodSeconds must be an integer") from None
        dry_run = list(body.get("dryRun") or []) + list(query.getall("dryRun", []))
        return {
            "propagation_policy": policy,
            "grace_period_seconds": grace,
            "preconditions": body.get("preconditions") or {},
            "dry_run": "All" in dry_run,
        }

    async def _delete(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        assert route.name is not None
        rt = route.rt
        if route.subresource is not None:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        options = await self._delete_options(request)
        obj, gone_now = deletion.delete(self.store, rt, self._namespace_for(route), route.name, **options)
        if gone_now and not (
            rt.is_custom
            or rt.storage_key in (("", "pods"), ("", "namespaces"), (CRD_GROUP, "customresourcedefinitions"))
        ):
            return self._json(_status_success(rt, obj), 200, "application/json")
        return self._respond(rt, obj, negotiated, 200, None, request)

    async def _delete_collection(
        self, request: web.Request, route: Route, negotiated: Negotiated
    ) -> web.StreamResponse:
        rt = route.rt
        labels, fields = self._selectors(request)
        options = await self._delete_options(request)
        options.pop("preconditions", None)
        deleted = deletion.delete_collection(
            self.store, rt, self._namespace_for(route), labels=labels, fields=fields, **options
        )
        body = {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": deleted,
        }
        return self._json(body, 200, "application/json")

    # -- subresources

    async def _scale(self, request: web.Request, route: Route, negotiated: Negotiated) -> web.StreamResponse:
        assert route.name is not None
        rt, namespace, name = route.rt, self._namespace_for(route), route.name
        if request.method == "GET":
            return self._json(scale.get_scale(self.store, rt, namespace, name), 200, "application/json")
        dry_run = "All" in request.query.getall("dryRun", [])
        if request.method == "PUT":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise bad_request("the body of the request must be a Scale object")
            return self._json(
                scale.update_scale(self.store, rt, namespace, name, body, dry_run=dry_run),
                200,
                "application/json",
            )
        if request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            patch = await self._body(request)
            patched = scale.patch_scale(self.store, rt, namespace, name, content_type, patch, dry_run=dry_run)
            return self._json(patched, 200, "application/json")
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    async def _pod_action(
        self, request: web.Request, route: Route, negotiated: Negotiated
    ) -> web.StreamResponse:
        assert route.name is not None and route.namespace is not None
        if request.method != "POST":
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        body = await self._body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        dry_run = "All" in request.query.getall("dryRun", [])
        if route.subresource == "binding":
            target = body.get("target") or {}
            binding.bind_pod(
                self.store, route.namespace, route.name, str(target.get("name", "")), dry_run=dry_run
            )
        else:
            deletion.evict_pod(self.store, route.namespace, route.name, body, dry_run=dry_run)
        return self._json(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
            201,
            "application/json",
        )
