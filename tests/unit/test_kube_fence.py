"""The Kube client against a small local HTTP server: writes ask the fence, are sent once, and end when
the fence would close; reads are retried by the transport as before."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
import yaml
from kopf._cogs.clients import errors as kopf_errors

from scaleset_operator import runner
from scaleset_operator.control.kube import Fenced, Kube, core_path


class Recorder(BaseHTTPRequestHandler):
    """Answers `{}` to everything; holds a write's answer `hold` seconds; drops the first GET unanswered."""

    seen: list[tuple[str, str, str]]
    hold = 0.0
    drop_first_get = False

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("User-Agent", "")))
        if self.command == "GET" and type(self).drop_first_get:
            type(self).drop_first_get = False
            self.close_connection = True
            return  # no answer at all: the client sees the connection end
        if self.command != "GET" and self.hold:
            time.sleep(self.hold)
        body = json.dumps({"metadata": {"name": "x"}}).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _answer

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"seen": [], "hold": 0.0, "drop_first_get": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{httpd.server_port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    yield str(kubeconfig), handler
    httpd.shutdown()
    httpd.server_close()


class Fence:
    def __init__(self, remaining: float) -> None:
        self.remaining = remaining
        self.admitted = 0

    @contextlib.contextmanager
    def writing(self) -> Iterator[float]:
        if self.remaining <= 0:
            raise Fenced("not sure of the Lease")
        self.admitted += 1
        yield self.remaining


def test_a_write_the_fence_refuses_is_not_sent_and_a_read_still_is(
    server: tuple[str, type[Recorder]],
) -> None:
    kubeconfig, handler = server
    kube = Kube.from_kubeconfig(kubeconfig, user_agent="scaleset-operator/replica-a", fence=Fence(0))
    path = core_path("pods", "default", "web-0")
    for write in (
        lambda: kube.patch(path, {"metadata": {"labels": {"a": "b"}}}),
        lambda: kube.create(core_path("pods", "default"), {"metadata": {"name": "web-0"}}),
        lambda: kube.update(path, {"metadata": {"name": "web-0"}}),
        lambda: kube.delete(path),
    ):
        with pytest.raises(Fenced):
            write()
    assert handler.seen == []
    kube.get(path)
    assert handler.seen == [("GET", path, "scaleset-operator/replica-a")]


def test_an_admitted_write_ends_when_the_fence_would_close_and_is_sent_once(
    server: tuple[str, type[Recorder]],
) -> None:
    kubeconfig, handler = server
    handler.hold = 3.0  # the API server (or the network) is slow to answer
    fence = Fence(0.5)
    kube = Kube.from_kubeconfig(kubeconfig, fence=fence)
    path = core_path("pods", "default", "web-0")
    for write in (lambda: kube.update(path, {"metadata": {"name": "web-0"}}), lambda: kube.delete(path)):
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            write()
        assert not isinstance(raised.value, Fenced)
        assert time.monotonic() - started < 2.0, "given up when the fence would close, not after 3 s"
    time.sleep(0.2)
    # urllib3 retries a PUT or a DELETE whose answer timed out; a fenced client sends each once.
    assert [method for method, _, _ in handler.seen] == ["PUT", "DELETE"]
    assert fence.admitted == 2


def test_a_read_is_still_retried_when_the_connection_drops(server: tuple[str, type[Recorder]]) -> None:
    kubeconfig, handler = server
    handler.drop_first_get = True
    kube = Kube.from_kubeconfig(kubeconfig, fence=Fence(0))
    path = core_path("pods", "default", "web-0")
    assert kube.get(path) == {"metadata": {"name": "x"}}
    assert [method for method, _, _ in handler.seen] == ["GET", "GET"]


async def test_kopfs_writes_ask_the_fence_too(server: tuple[str, type[Recorder]]) -> None:
    """kopf's finalizer patch goes through the same fence; a refused one is skipped by kopf as a patch
    of an object gone (its not-found error), never sent."""
    kubeconfig, handler = server
    config = yaml.safe_load(Path(kubeconfig).read_text())
    url = config["clusters"][0]["cluster"]["server"] + core_path("pods", "default", "web-0")
    async with aiohttp.ClientSession(middlewares=(runner._fenced(Fence(0)),)) as session:
        with pytest.raises(kopf_errors.APINotFoundError):
            await session.patch(url, json={"metadata": {"finalizers": ["f"]}})
        async with session.get(url) as response:
            assert response.status == 200
    async with (
        aiohttp.ClientSession(middlewares=(runner._fenced(Fence(5)),)) as session,
        session.patch(url, json={"metadata": {"finalizers": ["f"]}}) as response,
    ):
        assert response.status == 200
    assert [method for method, _, _ in handler.seen] == ["GET", "PATCH"]
