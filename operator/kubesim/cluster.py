"""A whole embedded cluster: API server, kubelet simulator and kubeconfig, async or in a background thread."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import importlib
import inspect
import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from kubesim import controllers
from kubesim.connection import Connection
from kubesim.controllers.root_ca import publish_root_ca
from kubesim.faults import FaultInjector, FaultPlan
from kubesim.server import ApiServer
from kubesim.store import Store
from kubesim.tls import Certificates

log = logging.getLogger("kubesim.cluster")
T = TypeVar("T")

CONTEXT = "kubesim"


def kubeconfig_for(
    url: str, *, context: str = CONTEXT, namespace: str = "default", ca_pem: bytes | None = None
) -> dict[str, Any]:
    """A kubeconfig naming the server (and its CA, for HTTPS) with no credentials (kubesim does not authenticate)."""
    cluster: dict[str, Any] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": cluster}],
        # kubectl asks for a password when an HTTPS server's user has no credentials: kubesim takes any token.
        "users": [{"name": context, "user": {"token": "kubesim"} if ca_pem is not None else {}}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}
        ],
        "current-context": context,
    }


def write_kubeconfig(
    path: str | os.PathLike[str], url: str, *, context: str = CONTEXT, ca_pem: bytes | None = None
) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(kubeconfig_for(url, context=context, ca_pem=ca_pem), sort_keys=False))
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
        tls: bool = True,
    ) -> None:
        self.host = host
        # HTTPS with a CA made for this cluster (in the kubeconfig), as a real API server; tls=False: plain HTTP.
        self.certificates = Certificates.generate((host, "localhost")) if tls else None
        self.port = port
        self.nodes = nodes
        self.time_scale = time_scale
        self.kubelet_enabled = kubelet
        self.seed = seed
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector(faults, seed=seed)
        self.store = store or Store(event_window=event_window, seed=seed)
        controllers.start(self.store)  # as kube-controller-manager starts its loops
        if self.certificates is not None:
            publish_root_ca(self.store, self.certificates.ca_pem)
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

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context trusting this cluster's CA; None when it serves plain HTTP."""
        return self.certificates.client_context() if self.certificates is not None else None

    async def start(self) -> Cluster:
        server_context = self.certificates.server_context() if self.certificates is not None else None
        await self.server.start(self.host, self.port, server_context)
        if self._requested_kubeconfig is None:
            self._own_dir = tempfile.mkdtemp(prefix="kubesim-")
            self.kubeconfig_path = Path(self._own_dir) / "kubeconfig"
        else:
            self.kubeconfig_path = self._requested_kubeconfig
        write_kubeconfig(
            self.kubeconfig_path,
            self.url,
            ca_pem=self.certificates.ca_pem if self.certificates is not None else None,
        )
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
        kubelet = module.Kubelet(Connection(self.url, self.ssl_context), **options)
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
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._require().ssl_context

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

        from kubernetes import config

        new_client: Any = config.new_client_from_config
        return new_client(config_file=str(self.kubeconfig_path))
