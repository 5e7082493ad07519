"""How kubesim's node-side loops talk to an API server: one HTTP session, requests, list-and-watch.

The kubelet, the node lifecycle, the volume provisioner and the scheduler each run as loops of their
own against the API server, as a real kubelet, kube-controller-manager and kube-scheduler do; they
share one `ApiClient` (its session, its requests and the tasks it runs), never the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from kubesim.connection import Connection

log = logging.getLogger("kubesim.kubelet")

# Real seconds before a failed write (binding, status, volume, deletion) is tried again.
RETRY_SECONDS = 0.2
# A request (not a watch) gets this long: an API server that went away mid-request (a restart) must
# not hold the status writer, and with it every pod's status, until the connection times out.
REQUEST_SECONDS = 15.0
# What a request to an API server that is restarting or gone may raise.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


class _Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


class ApiRequestError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(f"{method} {path}: {status} {body.get('message', body)}")
        self.status = status
        self.body = body


class ApiClient:
    """Requests and watches against the API server at `connection`, and the tasks that make them.

    `open` starts the session on the running loop; `close` cancels every task spawned since and ends
    the session.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.base_url = connection.url.rstrip("/")
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.stopping = False
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10),
            headers=self.connection.headers,
            connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context or True),
        )

    async def close(self) -> None:
        self.stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        assert self._session is not None, "the kubelet is not started"
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self._session.request(
            method,
            self.base_url + path,
            data=data,
            headers=headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS),
        ) as response:
            raw = await response.read()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw.decode(errors="replace")}
        return response.status, decoded if isinstance(decoded, dict) else {"items": decoded}

    async def expect(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        exists_ok: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """A request that raises ApiRequestError unless it succeeds (or finds the object existing)."""
        status, decoded = await self.request(method, path, body, content_type)
        if status >= 300 and not (exists_ok and decoded.get("reason") == "AlreadyExists"):
            raise ApiRequestError(method, path, status, decoded)
        return status, decoded

    async def persist(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str = "application/json",
        exists_ok: bool = False,
    ) -> None:
        """A write that must succeed for the kubelet to start: transient failures are retried a few times."""
        for attempt in range(20):
            status, answer = await self.request(method, path, body, content_type)
            if status < 300 or (exists_ok and answer.get("reason") == "AlreadyExists"):
                return
            if status not in (409, 429, 500, 503, 504) or attempt == 19:
                raise ApiRequestError(method, path, status, answer)
            await asyncio.sleep(RETRY_SECONDS)

    # -- tasks ---------------------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self.stopping:
            log.error("kubelet task failed", exc_info=task.exception())

    def later(self, seconds: float, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self.stopping:
            self._loop.call_later(seconds, callback)

    # -- watches -------------------------------------------------------------------------------

    async def watch(
        self,
        path: str,
        on_event: Callable[[str, dict[str, Any]], None],
        on_list: Callable[[list[dict[str, Any]]], None],
        synced: asyncio.Event,
    ) -> None:
        """List, then watch from the list's resourceVersion; list again when the watch expires or breaks."""
        assert self._session is not None
        retry = 0.1
        while not self.stopping:
            try:
                _, listing = await self.expect("GET", path)
                on_list(listing.get("items") or [])
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                synced.set()
                retry = 0.1
                while not self.stopping:
                    version = await self._watch_once(path, version, on_event)
            except _Expired:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    return
                log.warning("watch of %s failed (%s); listing again in %.1fs", path, exc, retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 5.0)

    async def _watch_once(
        self, path: str, version: str, on_event: Callable[[str, dict[str, Any]], None]
    ) -> str:
        assert self._session is not None
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        if version:
            params["resourceVersion"] = version
        async with self._session.get(
            self.base_url + path, params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        ) as response:
            if response.status == 410:
                raise _Expired()
            if response.status >= 300:
                raise ApiRequestError("WATCH", path, response.status, {"message": await response.text()})
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise _Expired()
                        raise ApiRequestError("WATCH", path, int(obj.get("code") or 500), obj)
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        on_event(str(kind), obj)
        return version
