"""A real control plane (the `testbed` Go program) with kubesim's kubelet simulator as its nodes.

The Go program runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1,
secured by a generated CA, and writes an admin kubeconfig. Here the kubelet simulator joins it as a
client of the API server, the way KWOK's nodes do: it registers nodes, runs the pods that
kube-scheduler binds to them, and provisions volumes for the claims that the PV controller binds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from kubesim.connection import connection_from_kubeconfig
from kubesim.kubelet import Kubelet

READY_PREFIX = "testbed ready:"


def source_folder(start: Path | None = None) -> Path | None:
    """The repository's `testbed/` folder (holding go.mod and go.sum), searched upwards from `start`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "testbed" / "go.sum").is_file():
            return folder / "testbed"
    return None


# The Makefile's TESTBED_RECIPE: how the binary is built (the version it reports) is part of its key.
TESTBED_RECIPE = b"version stamped from go.mod\n"


def cached_binary(source: Path) -> Path:
    """Where `make testbed` puts the binary: a folder keyed by go.sum, go.mod, the program's own source
    and the build recipe, so new versions (and a changed testbed) build anew."""
    parts = [source / "go.sum", source / "go.mod", *sorted(source.glob("*.go"))]
    key = hashlib.sha256(b"".join(part.read_bytes() for part in parts) + TESTBED_RECIPE).hexdigest()[:16]
    return source.parent / ".cache" / "testbed" / key / "testbed"


def find_binary() -> Path:
    """$TESTBED_BIN, or the binary that `make testbed` built for this checkout's go.sum."""
    explicit = os.environ.get("TESTBED_BIN")
    if explicit:
        return Path(explicit)
    source = source_folder()
    if source is None:
        raise FileNotFoundError("no testbed/go.sum above the working directory; set TESTBED_BIN")
    binary = cached_binary(source)
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing: run `make testbed` first")
    return binary


class Testbed:
    """The control plane in a child process and the kubelet simulator on a background thread's loop.

    `with Testbed(nodes=3, time_scale=20) as bed:` gives `bed.kubeconfig_path` (admin), `bed.url`,
    `bed.kubelet`, `bed.state_dir` (certificates, logs, `audit.log`), `bed.ca_path` and `bed.ssl_context`.
    What tests do to a control plane goes through the program's loopback control endpoint:
    `bed.compact()` (etcd, to its current revision) and `bed.restart_apiserver()`.
    """

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        kubeconfig_path: str | os.PathLike[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        nodes: int = 3,
        time_scale: float = 1.0,
        seed: int = 0,
        kubelet: bool = True,
        timeout: float = 180.0,
    ) -> None:
        self.binary = Path(binary) if binary is not None else find_binary()
        self._own_dir = state_dir is None
        self.state_dir = (
            Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="testbed-"))
        )
        self.kubeconfig_path = (
            Path(kubeconfig_path) if kubeconfig_path is not None else self.state_dir / "admin.kubeconfig"
        )
        self.nodes, self.time_scale, self.seed = nodes, time_scale, seed
        self.with_kubelet = kubelet
        self.timeout = timeout
        self.url = ""
        self.control_url = ""
        self.kubelet: Kubelet | None = None
        self._process: subprocess.Popen[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context that trusts the testbed's CA and presents the admin's certificate."""
        return connection_from_kubeconfig(self.kubeconfig_path).ssl_context

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def start(self) -> Testbed:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            "up",
            f"--dir={self.state_dir}",
            f"--kubeconfig={self.kubeconfig_path}",
            f"--timeout={int(self.timeout)}s",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            self._await_ready()
            self._await_default_service_account()
            if self.with_kubelet:
                self._start_kubelet()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + self.timeout + 30
        output: list[str] = []
        for line in self._process.stdout:
            output.append(line)
            if line.startswith(READY_PREFIX):
                fields = dict(part.split("=", 1) for part in line[len(READY_PREFIX) :].split() if "=" in part)
                self.url = fields["server"]
                self.control_url = fields.get("control", "")
                # Keep draining its output so that the child never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError("the testbed did not start:\n" + "".join(output[-40:]))

    def _await_default_service_account(self) -> None:
        """Wait for kube-controller-manager to give `default` its ServiceAccount: until then the API
        server refuses every pod there, so a cluster is not ready for use before it (as kind waits)."""
        connection = connection_from_kubeconfig(self.kubeconfig_path)
        request = urllib.request.Request(
            f"{connection.url}/api/v1/namespaces/default/serviceaccounts/default", headers=connection.headers
        )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10, context=connection.ssl_context):
                    return
            except urllib.error.HTTPError as error:
                if error.code != 404 or time.monotonic() > deadline:
                    raise RuntimeError(f"the testbed has no default ServiceAccount: {error}") from error
            time.sleep(0.1)

    def _drain(self) -> None:
        process = self._process
        if process is not None and process.stdout is not None:
            for _ in process.stdout:
                pass

    def _start_kubelet(self) -> None:
        connection = connection_from_kubeconfig(self.kubeconfig_path)
        kubelet = Kubelet(
            connection,
            nodes=self.nodes,
            time_scale=self.time_scale,
            seed=self.seed,
            schedule_pods=False,
            bind_claims=False,
        )
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(kubelet.start())
            except BaseException as error:
                started.set_exception(error)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(kubelet.stop())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="testbed-kubelet", daemon=True)
        self._thread.start()
        started.result(timeout=60)
        self.kubelet = kubelet

    def compact(self) -> int:
        """Compact etcd to its current revision, as the API server's own compactor does every 5 minutes:
        continue tokens and watch positions from before it expire (410 Gone). Returns the revision."""
        answer = self._control("/compact")
        return int(answer["revision"])

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd; returns once it is ready.
        Every client's connections and watches break, and the new one's watch cache starts afresh."""
        self._control("/restart/kube-apiserver")

    def _control(self, path: str) -> dict[str, Any]:
        if not self.control_url:
            raise RuntimeError("this testbed binary has no control endpoint: run `make testbed`")
        request = urllib.request.Request(self.control_url + path, method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=self.timeout + 30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
        return answer

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop, self._thread, self.kubelet = None, None, None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def api_client(self) -> Any:
        from kubesim.testing import api_client_for

        return api_client_for(self.kubeconfig_path)
