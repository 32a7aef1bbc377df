"""One OS process = one replica of one (or more) workers, until SIGTERM or SIGINT.

python -m workers.runtime.process --worker tasks --replica 2
RALLY_REGISTRY_SHARDS=4 python -m workers.runtime.process --worker registry --shard 1 --replica 0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence

import structlog

from broker.errors import BrokerError
from broker.logs import configure_logging
from broker.metrics import port_number
from broker.transport_errors import transport_errors
from workers.runtime import gc_policy
from workers.runtime.metrics import expose_worker
from workers.runtime.services import run_services
from workers.runtime.settings import WorkerSettings
from workers.store.errors import StoreError

log = structlog.get_logger(__name__)

START_ATTEMPTS = 3


async def serve(
    workers: Sequence[str],
    replica: str,
    settings: WorkerSettings,
    *,
    metrics_port: int | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    structlog.contextvars.bind_contextvars(worker="+".join(workers), replica=replica)
    if "registry" in workers and settings.registry_shards > 1:  # one grep follows a shard
        shard = f"{settings.registry_shard}/{settings.registry_shards}"
        structlog.contextvars.bind_contextvars(shard=shard)
    with transport_errors():
        async with (
            run_services(settings, workers=workers, replica=replica) as running,
            expose_worker(running, metrics_port),
        ):
            await stop.wait()
            log.info("worker.stopping")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.runtime.process")
    parser.add_argument("--worker", action="append", required=True, help="registry|tasks|allocator")
    parser.add_argument("--replica", default="0")
    parser.add_argument(
        "--shard",
        type=int,
        metavar="K",
        help="the registry shard this process runs, 0..RALLY_REGISTRY_SHARDS-1 "
        "(default: RALLY_REGISTRY_SHARD, else 0)",
    )
    parser.add_argument(
        "--metrics-port", type=port_number, metavar="PORT", help="serve Prometheus /metrics"
    )
    args = parser.parse_args(argv)
    configure_logging()
    try:
        gc_policy.apply(os.environ.get("RALLY_GC_THRESHOLDS"))
        shard = {} if args.shard is None else {"registry_shard": args.shard}
        settings = WorkerSettings.from_env(**shard)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                asyncio.run(
                    serve(args.worker, args.replica, settings, metrics_port=args.metrics_port)
                )
                break
            except BrokerError as exc:
                # replicas started together can race RabbitMQ 3.10 into an INTERNAL_ERROR on
                # their first consume of a new quorum queue; a moment later it works
                if attempt == START_ATTEMPTS:
                    raise
                log.warning("worker.start_retry", attempt=attempt, error=str(exc))
                time.sleep(0.5 * attempt)
    except (BrokerError, StoreError, ValueError, OSError) as exc:
        print(f"rally worker: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
