"""A whole embedded cluster: API server, kubelet simulator and kubeconfig, async or in a background thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from kubesim.faults import FaultInjector, FaultPlan
from kubesim.server import ApiServer
from kubesim.store import Store

log = logging.getLogger("kubesim.cluster")
T = TypeVar("T")

CONTEXT = "kubesim"


def kubeconfig_for(url: str, *, context: str = CONTEXT, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig naming a plain-HTTP server with no credentials (kubesim does not authenticate)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}
        ],
        "current-context": context,
    }


def write_kubeconfig(path: str | os.PathLike[str], url: str, *, context: str = CONTEXT) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(kubeconfig_for(url, context=context), sort_keys=False))
    return target


class Cluster:
    """The API server (and the kubelet simulator, when available) on 127.0.0.1, with a kubeconfig.

    Use `async with Cluster() as cluster:`; `cluster.url`, `cluster.kubeconfig_path` and
    `cluster.store` (the in-process store, for tests that seed or inspect state) are set once started.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        kubeconfig_path: str | os.PathLike[str] | None = None,
        nodes: int = 3,
        time_scale: float = 1.0,
        kubelet: bool = True,
        faults: FaultInjector | FaultPlan | None = None,
        seed: int | None = 0,
        bookmark_interval: float = 60.0,
        event_window: int = 50_000,
        store: Store | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.nodes = nodes
        self.time_scale = time_scale
        self.kubelet_enabled = kubelet
        self.seed = seed
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector(faults, seed=seed)
        self.store = store or Store(event_window=event_window, seed=seed)
        self.server = ApiServer(
            self.store, faults=self.faults, bookmark_interval=bookmark_interval, seed=seed
        )
        self.kubelet: Any = None
        self._own_dir: str | None = None
        self._requested_kubeconfig = Path(kubeconfig_path) if kubeconfig_path is not None else None
        self.kubeconfig_path: Path | None = None

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> Cluster:
        await self.server.start(self.host, self.port)
        if self._requested_kubeconfig is None:
            self._own_dir = tempfile.mkdtemp(prefix="kubesim-")
            self.kubeconfig_path = Path(self._own_dir) / "kubeconfig"
        else:
            self.kubeconfig_path = self._requested_kubeconfig
        write_kubeconfig(self.kubeconfig_path, self.url)
        if self.kubelet_enabled:
            await self._start_kubelet()
        return self

    async def _start_kubelet(self) -> None:
        try:
            module = importlib.import_module("kubesim.kubelet")
        except ImportError:
            log.info("kubesim runs without a kubelet: kubesim.kubelet is not available")
            return
        options: dict[str, Any] = {"nodes": self.nodes, "time_scale": self.time_scale}
        if self.seed is not None and "seed" in inspect.signature(module.Kubelet).parameters:
            options["seed"] = self.seed  # the same seed makes the whole cluster reproducible
        kubelet = module.Kubelet(self.url, **options)
        try:
            await kubelet.start()
        except BaseException:
            await self.server.stop()
            raise
        self.kubelet = kubelet

    async def stop(self) -> None:
        if self.kubelet is not None:
            with contextlib.suppress(Exception):
                await self.kubelet.stop()
            self.kubelet = None
        await self.server.stop()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    async def __aenter__(self) -> Cluster:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class LoopBoundStore:
    """The store as seen from another thread: every method call runs on the cluster's event loop.

    Writes then happen where the server's watchers live, so watch streams see them in order and
    bookmarks never run ahead of queued events.
    """

    def __init__(self, store: Store, call: Callable[..., Any]) -> None:
        self._store = store
        self._call = call

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or name in ("type", "present"):
            return attr

        def bound(*args: Any, **kwargs: Any) -> Any:
            return self._call(attr, *args, **kwargs)

        return bound


class ThreadedCluster:
    """A Cluster running in a background thread with its own event loop, for synchronous code.

    Tests using the synchronous `kubernetes` client or `kubectl` subprocesses use this:
    `with ThreadedCluster() as cluster: subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig_path, ...])`.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.cluster: Cluster | None = None

    def start(self, timeout: float = 60.0) -> ThreadedCluster:
        ready: concurrent.futures.Future[Cluster] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                cluster = Cluster(**self._options)
                loop.run_until_complete(cluster.start())
            except BaseException as error:
                ready.set_exception(error)
                loop.close()
                return
            ready.set_result(cluster)
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="kubesim", daemon=True)
        self._thread.start()
        self.cluster = ready.result(timeout=timeout)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is None or self.cluster is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            self.run(self.cluster.stop(), timeout=timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop = None
        self._thread = None
        self.cluster = None

    def __enter__(self) -> ThreadedCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _require(self) -> Cluster:
        if self.cluster is None:
            raise RuntimeError("the cluster is not running")
        return self.cluster

    @property
    def url(self) -> str:
        return self._require().url

    @property
    def kubeconfig_path(self) -> Path:
        path = self._require().kubeconfig_path
        assert path is not None
        return path

    @property
    def faults(self) -> FaultInjector:
        return self._require().faults

    @property
    def kubelet(self) -> Any:
        return self._require().kubelet

    @property
    def store(self) -> Any:
        """The store, with every method call run on the cluster's loop (a LoopBoundStore)."""
        return LoopBoundStore(self._require().store, self.call)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        """Run a coroutine on the cluster's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the cluster's loop thread and wait for its result."""

        async def invoke() -> T:
            return fn(*args, **kwargs)

        return self.run(invoke())

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` talking to this cluster."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)
