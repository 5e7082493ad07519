"""A loopback TCP proxy whose forwarding a test can pause: a replica's API traffic stalled, as by a
network that stops delivering.

While paused, bytes are held in both directions. A connection that either end closes while paused
loses what was held for it: its sender gave up on those bytes, as TCP drops the unacknowledged data of
a connection reset. On resume, what was held for the connections still open goes on, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class StallingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.dropped = 0  # connections closed while paused, with bytes held for them
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="stalling-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> StallingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop.is_closed():
            return
        self.resume()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def pause(self) -> None:
        self._loop.call_soon_threadsafe(self._gate().clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._gate().set)

    def _gate(self) -> asyncio.Event:
        assert self._open is not None
        return self._open

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._open = asyncio.Event()
        self._open.set()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        writers = (client_writer, server_writer)
        await asyncio.gather(
            self._pump(client_reader, server_writer, writers),
            self._pump(server_reader, client_writer, writers),
            return_exceptions=True,
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        gate = self._gate()
        held = bytearray()
        read = asyncio.ensure_future(reader.read(65536))
        try:
            while True:
                done, _ = await asyncio.wait({read}, timeout=0.02)
                if gate.is_set() and held:
                    writer.write(bytes(held))
                    held.clear()
                    await writer.drain()
                if not done:
                    continue
                try:
                    data = read.result()
                except OSError:
                    data = b""
                if not data:  # this end closed: the other end goes too, without what was held
                    if held:
                        self.dropped += 1
                    return
                if gate.is_set():
                    writer.write(data)
                    await writer.drain()
                else:
                    held += data
                read = asyncio.ensure_future(reader.read(65536))
        except (OSError, asyncio.CancelledError):
            return
        finally:
            read.cancel()
            for each in both:
                each.close()
