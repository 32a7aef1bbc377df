"""An asyncio TCP proxy between clients and the broker that a test can cut or black-hole.

- :meth:`FaultProxy.cut`: every open connection is reset at once and new ones
  are refused: the client sees the loss immediately (a crashed broker host).
- :meth:`FaultProxy.blackhole`: connections stay open but every byte in
  either direction vanishes, and new connections hang the same way (a
  partition, a dead NAT entry): only heartbeats can tell the client.
- :meth:`FaultProxy.freeze_downstream`: hold every byte the broker sends
  (confirms included) while the client's still get through: a publish reaches
  the broker and its confirm never comes back (what makes a retry a duplicate).
- :meth:`FaultProxy.restore`: new connections pass again and the broker's
  bytes flow again; black-holed connections are reset (their peers gave up on
  them long ago, or should have).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class FaultProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._parts = parts
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.mode = "up"  # up | cut | blackhole
        self._downstream = asyncio.Event()  # cleared: the broker's bytes are held
        self._downstream.set()
        self.accepted = 0  # connections passed through to the broker
        self.changed_at = time.monotonic()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    def url(self, **query: object) -> str:
        """The target URL with the proxy's address, plus extra query parameters."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        creds = self._parts.netloc.rsplit("@", 1)
        netloc = f"{creds[0]}@127.0.0.1:{port}" if len(creds) == 2 else f"127.0.0.1:{port}"
        extra = "&".join(f"{k}={v}" for k, v in query.items())
        joined = "&".join(q for q in (self._parts.query, extra) if q)
        path = self._parts.path or "/"
        return urlunsplit(self._parts._replace(netloc=netloc, path=path, query=joined))

    def cut(self) -> None:
        self._set("cut")
        self._reset_all()
        for task in list(self._tasks):  # a pump held by a freeze must not outlive its link
            task.cancel()

    def freeze_downstream(self) -> None:
        """Hold every byte the broker sends, on every connection, until restored or cut."""
        self._downstream.clear()

    def blackhole(self) -> None:
        self._set("blackhole")

    def restore(self) -> None:
        was = self.mode
        self._set("up")
        self._downstream.set()
        if was == "blackhole":
            self._reset_all()

    async def close(self) -> None:
        self._set("cut")
        self._reset_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _set(self, mode: str) -> None:
        self.mode = mode
        self.changed_at = time.monotonic()

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode == "blackhole":
            self._spawn(self._swallow(reader))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.add(up_writer)
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._pump(up_reader, writer, self._downstream))

    async def _swallow(self, src: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await src.read(65536):
                pass

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        gate: asyncio.Event | None = None,
    ) -> None:
        try:
            while data := await src.read(65536):
                if self.mode == "blackhole":
                    continue  # into the void, in both directions
                if gate is not None:
                    await gate.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if self.mode == "blackhole":
            return  # not even a close gets through: the other side must find out alone
        self._writers.discard(dst)
        with contextlib.suppress(Exception):
            dst.transport.abort()
