"""The per-message log fields: one context variable, layered, restored on the way out."""

from __future__ import annotations

import asyncio
import io
import json

import structlog

from broker.logs import (
    bind_message_fields,
    current_message_fields,
    merge_message_fields,
    message_fields,
)


def logged(action: object) -> list[dict[str, object]]:
    out = io.StringIO()
    structlog.configure(
        processors=[merge_message_fields, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    try:
        action()  # type: ignore[operator]
    finally:
        structlog.reset_defaults()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_fields_nest_bind_and_restore() -> None:
    def action() -> None:
        log = structlog.get_logger()
        with message_fields(message_id="m1", worker="tasks"):
            log.info("outer")
            with message_fields(attempt=2):
                bind_message_fields(task_id="t1")
                log.info("inner", worker="explicit")  # what the call passes wins
            log.info("after")
        log.info("outside")

    lines = logged(action)
    assert lines[0] == {"event": "outer", "message_id": "m1", "worker": "tasks"}
    assert lines[1] == {
        "event": "inner",
        "message_id": "m1",
        "worker": "explicit",
        "attempt": 2,
        "task_id": "t1",
    }
    assert lines[2] == {"event": "after", "message_id": "m1", "worker": "tasks"}
    assert lines[3] == {"event": "outside"}
    assert current_message_fields() == {}


async def test_concurrent_messages_keep_their_own_fields() -> None:
    seen: dict[str, str] = {}

    async def handle(message_id: str) -> None:
        with message_fields(message_id=message_id):
            await asyncio.sleep(0)  # the other message runs here
            seen[message_id] = str(current_message_fields()["message_id"])

    await asyncio.gather(handle("a"), handle("b"))
    assert seen == {"a": "a", "b": "b"}
