"""One attempt of one task on this agent: started → handler → succeeded | failed.

Every report carries the attempt and fencing token of the assignment and is
delivered in the background (``ReliableSender.deliver_soon``): in order, and
retried until confirmed while the handler goes on.

The start report waits :data:`START_GRACE_S` after the handler begins. A task
done by then sends only its final report, and the task manager records the
start with it (the history still reads started, then the end): for quick
tasks that is one message, one handling and one write fewer. A progress
report sends the start first.

Stopping: a ``StopTask`` cancels the handler and sends *no* report (the task
manager already decided the attempt is over, and would refuse a late report
for it anyway). An agent that gives up waiting while it stops reports the
attempt as failed and retryable (``AgentStopped``), so it is placed again at
once rather than after a time-out.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import structlog
from pydantic import ValidationError

from broker.logs import message_fields
from contracts import (
    AssignTask,
    Envelope,
    ReportTaskFailed,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
)
from sdk.delivery import ReliableSender
from sdk.errors import describe
from sdk.lease import LeaseBook
from sdk.task import Handler, Task

log = structlog.get_logger(__name__)

CancelReason = Literal["stop", "shutdown"]
START_GRACE_S = 0.005


class Execution:
    def __init__(
        self,
        envelope: Envelope[AssignTask],
        handler: Handler,
        *,
        agent_id: str,
        sender: ReliableSender,
        leases: LeaseBook,
    ) -> None:
        self.envelope = envelope
        self.assign = envelope.payload
        self.handler = handler
        self.agent_id = agent_id
        self.sender = sender
        self.leases = leases
        self.cancel_reason: CancelReason | None = None
        self.aio_task: asyncio.Task[None] | None = None
        self.final: asyncio.Task[None] | None = None  # the final report's delivery
        self._start: asyncio.TimerHandle | None = None  # the start report, not yet sent

    @property
    def attempt(self) -> int:
        return self.assign.attempt

    def start(self) -> asyncio.Task[None]:
        self.aio_task = asyncio.create_task(self._run(), name=f"task:{self.assign.task_id}")
        return self.aio_task

    def cancel(self, reason: CancelReason) -> None:
        if reason == "stop" and self._start is not None:  # stopped: it sends no report at all
            self._start.cancel()
            self._start = None
        if self.aio_task is not None and not self.aio_task.done():
            self.cancel_reason = self.cancel_reason or reason
            self.aio_task.cancel()

    def _ids(self) -> dict[str, Any]:
        a = self.assign
        return {
            "task_id": a.task_id,
            "agent_id": self.agent_id,
            "attempt": a.attempt,
            "fencing_token": a.fencing_token,
        }

    def _report(self, payload: Any) -> asyncio.Task[None]:
        if self._start is not None:  # a final report stands for the start; progress follows it
            self._start.cancel()
            self._start = None
            if isinstance(payload, ReportTaskProgress):
                self._send_started()
        return self.sender.deliver_soon(self.sender.wrap(payload, caused_by=self.envelope))

    def _send_started(self) -> None:
        self._start = None
        self._report(ReportTaskStarted(**self._ids()))

    def _on_progress(self, fraction: float, message: str | None) -> None:
        if self.cancel_reason is None:
            self._report(ReportTaskProgress(**self._ids(), progress=fraction, message=message))

    async def _run(self) -> None:
        a = self.assign
        with message_fields(
            task_id=str(a.task_id),
            attempt=a.attempt,
            capability=a.capability,
            correlation_id=str(self.envelope.correlation_id),
        ):
            loop = asyncio.get_running_loop()
            self._start = loop.call_later(START_GRACE_S, self._send_started)
            held = self.leases.adopt(a.leases, ttl_s=max(a.timeout_s, 30.0))
            task = Task(
                id=a.task_id,
                capability=a.capability,
                payload=a.payload,
                attempt=a.attempt,
                fencing_token=a.fencing_token,
                timeout_s=a.timeout_s,
                agent_id=self.agent_id,
                leases=tuple(held),
                _progress=self._on_progress,
                _book=self.leases,
            )
            try:
                await self._handle(task)
            finally:
                for lease in held:
                    self.leases.drop(lease)

    async def _handle(self, task: Task) -> None:
        deadline = asyncio.timeout(self.assign.timeout_s)
        try:
            async with deadline:
                result = await self.handler(task)
        except asyncio.CancelledError:
            if self.cancel_reason == "shutdown":
                self.final = self._report(
                    ReportTaskFailed(
                        **self._ids(),
                        error="the agent stopped before the task finished",
                        error_type="AgentStopped",
                        retryable=True,
                    )
                )
            log.info("sdk.task_cancelled", reason=self.cancel_reason)
            if self.cancel_reason is None:
                raise  # not ours: whoever cancelled us expects the cancellation to propagate
            return
        except Exception as exc:  # the handler's failure becomes the report, never a crash
            fields = describe(exc)
            if isinstance(exc, TimeoutError) and deadline.expired():
                fields = {
                    "error": f"no result within the time-out of {self.assign.timeout_s}s",
                    "error_type": "TaskTimeout",
                    "retryable": True,
                }
            log.warning("sdk.task_failed", **fields, exc_info=True)
            self.final = self._report(ReportTaskFailed(**self._ids(), **fields))
            return
        if self.cancel_reason == "stop":
            log.info("sdk.result_dropped", why="the attempt was stopped")
            return
        try:
            report = ReportTaskSucceeded(**self._ids(), result=result)
        except ValidationError as exc:
            self.final = self._report(
                ReportTaskFailed(
                    **self._ids(),
                    error=f"the result is not JSON: {exc.errors()[0]['msg']}",
                    error_type="InvalidResult",
                    retryable=False,
                )
            )
            return
        log.info("sdk.task_succeeded")
        self.final = self._report(report)
