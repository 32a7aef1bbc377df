"""The Celery peer's app: one no-op task on a queue of its own.

The worker process loads it through :mod:`workers.bench.celery_worker`, which
reads the broker and queue from the environment; the bench process builds the
same app with :func:`make_app`. Configured as the issue asks — pyamqp
broker, publisher confirms on, rpc result backend — and otherwise Celery's
defaults (a classic durable queue, persistent task messages, JSON).
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import quote, unquote, urlsplit

BROKER_ENV = "RALLY_BENCH_CELERY_BROKER"
QUEUE_ENV = "RALLY_BENCH_CELERY_QUEUE"
NOOP = "rally_bench.noop"


def celery_broker_url(amqp_url: str) -> str:
    """The same broker as an aio-pika URL, spelled for Celery's pyamqp transport."""
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    auth = ""
    if parts.username:
        auth = quote(unquote(parts.username), safe="")
        if parts.password:
            auth += ":" + quote(unquote(parts.password), safe="")
        auth += "@"
    host = parts.hostname or "127.0.0.1"
    return f"pyamqp://{auth}{host}:{parts.port or 5672}/{quote(vhost, safe='')}"


def noop() -> None:
    return None


def exchanges(queue: str) -> tuple[str, ...]:
    """Every exchange an app of ``queue`` may declare."""
    return (queue, f"{queue}.ev", f"{queue}.control.pidbox", f"reply.{queue}.control.pidbox")


def make_app(broker_url: str, queue: str) -> Any:
    # celery ships no type information: imported by name, it is Any to mypy --strict
    try:
        celery = importlib.import_module("celery")
    except ModuleNotFoundError:
        raise RuntimeError(
            "Celery is not installed: pip install 'rallypoint[bench]' (or --skip celery)"
        ) from None
    app = celery.Celery("rally_bench", broker=broker_url, backend="rpc://", set_as_current=False)
    app.conf.update(
        broker_transport_options={"confirm_publish": True},
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # nothing shared on the broker: Celery's event and control exchanges are named for
        # this run too (and deleted with it); remote control is off, so no pidbox queues
        event_exchange=f"{queue}.ev",
        control_exchange=f"{queue}.control",
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name=NOOP)(noop)
    return app
