"""The conformance contract on the Python SDK: `python -m workers.conformance.reference_agent`.

It reads what `rally conformance` passes in the environment (docs/protocol.md,
"Checking an implementation") and runs the one capability whose behaviour the
task payload drives: report each `progress` fraction, wait `seconds` (a StopTask
ends the wait and the attempt), then succeed with `result` or fail with `error`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from broker.logs import configure_logging
from sdk import Agent, Task, TaskError


async def conformance(task: Task) -> Any:
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    for fraction in payload.get("progress") or []:
        await task.progress(float(fraction), f"at {fraction}")
    await asyncio.sleep(float(payload.get("seconds") or 0))
    if payload.get("action", "succeed") == "fail":
        retryable = bool(payload.get("retryable", True))
        raise TaskError(str(payload.get("error", "failed on request")), retryable=retryable)
    return payload.get("result")


def build(env: dict[str, str] | None = None) -> Agent:
    env = dict(os.environ if env is None else env)
    agent = Agent(
        env["RALLY_AGENT_ID"],
        capacity=int(env.get("RALLY_CAPACITY", "1")),
        heartbeat_interval_s=float(env.get("RALLY_HEARTBEAT_S", "5")),
        software_version="conformance-reference",
    )
    agent.add_capability(env.get("RALLY_CONFORMANCE_CAPABILITY", "conformance"), conformance)
    return agent


def main() -> None:
    configure_logging(os.environ.get("RALLY_LOG_LEVEL", "INFO"), json=True)
    # run() drains on SIGTERM (DeregisterAgent drain, finish, leave) and returns
    asyncio.run(build().run())


if __name__ == "__main__":
    main()
