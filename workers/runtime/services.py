"""Start and stop worker services in this process: the in-process API of the runner.

One call wires what a replica needs, in order — connect (named after the
workers and the replica), declare the topology, open the store, start the
outbox relay, start the services — and undoes it in reverse::

    async with run_services(settings, workers=["registry", "tasks"], replica="0") as running:
        ...

``rally worker`` runs one of these per OS process; tests and ``rally demo``
run them in-process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from broker.connection import BrokerConnection
from broker.declare import declare_topology
from broker.publisher import Publisher
from broker.topology import event_subscribed
from workers.runtime.clock import Clock, SystemClock
from workers.runtime.context import Service, ServiceContext
from workers.runtime.dependencies import HandlerStore
from workers.runtime.metrics import timed
from workers.runtime.outbox import OutboxPublisher, encode_event
from workers.runtime.recipients import SingleRecipients
from workers.runtime.settings import WORKERS, WorkerSettings
from workers.store import open_store
from workers.store.group_commit import GroupCommitter
from workers.store.relay import Relay

log = structlog.get_logger(__name__)


def _factories() -> dict[str, Callable[[ServiceContext], Service]]:
    # imported here: a process running one worker need not import the others
    from workers.allocator.service import AllocatorService
    from workers.registry.service import RegistryService
    from workers.tasks.service import TasksService

    return {"registry": RegistryService, "tasks": TasksService, "allocator": AllocatorService}


@dataclass
class Running:
    """What ``run_services`` started, for tests and diagnostics."""

    conn: BrokerConnection
    publisher: Publisher
    store: object
    relay: Relay
    services: dict[str, Service] = field(default_factory=dict)


def expand(workers: Sequence[str]) -> list[str]:
    names = [w for name in workers for w in (WORKERS if name == "all" else (name,))]
    unknown = sorted(set(names) - set(WORKERS))
    if unknown:
        raise ValueError(f"unknown worker {', '.join(unknown)}: choose from {', '.join(WORKERS)}")
    return list(dict.fromkeys(names))


@contextlib.asynccontextmanager
async def run_services(
    settings: WorkerSettings,
    *,
    workers: Sequence[str],
    replica: str = "0",
    clock: Clock | None = None,
) -> AsyncIterator[Running]:
    names = expand(workers)
    role = "+".join(names)
    conn = await BrokerConnection(settings.broker, role=role, replica=replica).connect()
    # an event no queue subscribes to gets no outbox row: never written, never published
    store = open_store(settings.store_url, publishes=event_subscribed)
    # handlers append through the group committer: the appends of all messages in flight
    # share one transaction (and one write lock) instead of queueing for one each
    committer = GroupCommitter(store)
    relay: Relay | None = None
    started: list[Service] = []
    try:
        await declare_topology(conn)
        await store.start()
        publisher = await Publisher(conn, sender=role).start()
        relay = Relay(
            store,
            OutboxPublisher(publisher, SingleRecipients(store)),
            encode_event,
            replica=f"{role}:{replica}",
            claim_seconds=settings.relay_claim_s,
        )
        await relay.start()
        ctx = ServiceContext(
            conn=conn,
            publisher=publisher,
            store=HandlerStore(committer),  # the store being down holds the message
            settings=settings,
            replica=replica,
            clock=clock or SystemClock(),
        )
        running = Running(conn, publisher, store, relay)
        factories = _factories()
        for name in names:
            service = factories[name](timed(ctx, name))  # store appends timed per worker
            await service.start()
            started.append(service)
            running.services[name] = service
        if "tasks" in names:  # retention deletes the task manager's streams: it runs beside it
            from workers.retention.service import retention_service

            service = retention_service(store, settings, replica)
            await service.start()
            started.append(service)
            running.services[service.name] = service
        # every process offers to keep the read models current; the store's lease picks one
        from workers.readmodels.service import ReadModelsService

        service = ReadModelsService(store, store, replica=replica)
        await service.start()
        started.append(service)
        running.services[service.name] = service
        log.info("worker.started", workers=names, replica=replica, connection=conn.name)
        yield running
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:  # keep stopping the rest; unacked work is redelivered
                log.exception("worker.stop_failed", worker=service.name)
        with contextlib.suppress(Exception):
            await committer.stop()
        if relay is not None:
            with contextlib.suppress(Exception):
                await relay.flush()
            await relay.stop()
        await store.close()
        await conn.close()
        log.info("worker.stopped", workers=names, replica=replica)
