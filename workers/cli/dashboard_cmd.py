"""`rally dashboard`: serve the live, read-only web page of the fleet until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import sys
from typing import Any

from broker.settings import BrokerSettings
from workers.cli.main import UserError
from workers.dashboard.server import build_app, is_loopback, serve
from workers.dashboard.service import Dashboard, DashboardConfig
from workers.dlq.archive import ArchiveError
from workers.runtime.logs import quiet_logs
from workers.store import StoreError, default_store_url


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError("give between 0.1 and 3600 seconds")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is between 0 and 65535 (0 picks a free one)")
    return value


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dashboard", help="serve a live, read-only web page of the fleet on localhost"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8080, help="port (8080; 0 picks a free one and prints it)"
    )
    parser.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    parser.add_argument(
        "--refresh",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="how often the page and the views refresh (1)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    config = DashboardConfig(
        store_url=args.store or default_store_url(),
        broker=BrokerSettings.from_env(),
        refresh_s=args.refresh,
    )
    return asyncio.run(_serve(config, args.host, args.port))


async def _serve(config: DashboardConfig, host: str, port: int) -> int:
    dashboard = Dashboard(config)
    loopback = is_loopback(host)
    # listen first: a port in use is refused before the store or the broker is touched
    try:
        runner, url = await serve(build_app(dashboard, loopback_only=loopback), host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use: choose another with --port (0 picks a free one)"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        try:
            await dashboard.start()
        except (StoreError, ArchiveError) as exc:
            raise UserError(str(exc)) from None
        try:
            await _until_stopped(dashboard, url, host, loopback)
        finally:
            await dashboard.stop()
    finally:
        await runner.cleanup()
    return 0


async def _until_stopped(dashboard: Dashboard, url: str, host: str, loopback: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # SIGTERM (a service manager): exit 0
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    if not loopback:
        print(
            f"rally: listening on {host}, not only this machine: anyone who can reach it "
            "sees agents, payloads and dead letters",
            file=sys.stderr,
        )
    print(f"rally dashboard: {url} (namespace {dashboard.topology.namespace}; Ctrl-C stops)")
    sys.stdout.flush()
    try:
        await stop.wait()  # or until Ctrl-C cancels us
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGTERM)
