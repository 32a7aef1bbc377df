"""``GET /metrics``: the process's registry over HTTP, shared by the users of one port."""

from __future__ import annotations

import argparse
import os
import socket
from typing import TYPE_CHECKING

import structlog
from prometheus_client.exposition import choose_encoder

from broker.metrics_registry import REGISTRY

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger("broker.metrics")

METRICS_HOST_ENV = "RALLY_METRICS_HOST"
DEFAULT_HOST = "0.0.0.0"  # scraped from other hosts, as exporters are


class MetricsServer:
    """``GET /metrics`` on ``host:port``, in this event loop (so scrapes read state safely)."""

    def __init__(self, port: int, host: str | None = None) -> None:
        self.host = host or os.environ.get(METRICS_HOST_ENV) or DEFAULT_HOST
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> MetricsServer:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", _scrape)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # our own socket, so that port 0 (any free port) can tell which port it got
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            await runner.cleanup()
            raise OSError(
                exc.errno, f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        log.info("metrics.serving", host=self.host, port=self.port, path="/metrics")
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _scrape(request: web.Request) -> web.Response:
    from aiohttp import web

    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


_shared: dict[int, tuple[MetricsServer, int]] = {}  # port → (server, users)


async def serve(port: int, host: str | None = None) -> MetricsServer:
    """The server on ``port``, started if this process has none there yet (several agents
    in one process share it); port 0 always starts a new one on a free port."""
    if port in _shared:
        server, users = _shared[port]
        _shared[port] = (server, users + 1)
        return server
    server = await MetricsServer(port, host).start()
    if port:
        _shared[port] = (server, 1)
    return server


async def release(server: MetricsServer, port: int) -> None:
    """Done with a server from :func:`serve`; the last user closes it."""
    shared = _shared.get(port) if port else None
    if shared is None or shared[0] is not server:
        await server.close()
        return
    if shared[1] > 1:
        _shared[port] = (server, shared[1] - 1)
        return
    del _shared[port]
    await server.close()


def port_number(text: str) -> int:
    """``--metrics-port`` as argparse reads it: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r} (0 to 65535)")
    return port
