"""Simulated agents for the demo, several in one process: `python -m workers.demo.agents`.

Each sleeps a few milliseconds per task, fails on purpose when the payload says
so, and never succeeds at the poison task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from broker.logs import configure_logging
from sdk import Agent, Task
from workers.demo.scenario import AgentPlan


async def work(task: Task) -> dict[str, Any]:
    payload: dict[str, Any] = task.payload if isinstance(task.payload, dict) else {}
    if payload.get("poison"):
        raise RuntimeError("poison pill: this task always fails")
    if task.attempt <= int(payload.get("fail_attempts", 0)):
        raise ConnectionError(f"flaky upstream on attempt {task.attempt}")
    await asyncio.sleep(int(payload.get("ms", 10)) / 1000)
    return {"done_by": task.agent_id, "attempt": task.attempt}


def build_agent(plan: AgentPlan, heartbeat_s: float, metrics_port: int | None = None) -> Agent:
    agent = Agent(
        plan.agent_id,
        capacity=plan.capacity,
        heartbeat_interval_s=heartbeat_s,
        software_version="demo",
        metrics_port=metrics_port,  # the agents of one process share the port
    )
    for capability in plan.capabilities:
        agent.add_capability(capability, work)
    return agent


async def run(plans: list[AgentPlan], heartbeat_s: float, metrics_port: int | None = None) -> None:
    agents = [build_agent(plan, heartbeat_s, metrics_port) for plan in plans]
    await asyncio.gather(*(agent.start() for agent in agents))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(agent.stop(timeout=5) for agent in agents), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.demo.agents")
    parser.add_argument("--plans", required=True, help="JSON list of agent plans")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics")
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    plans = [
        AgentPlan(p["agent_id"], tuple(p["capabilities"]), p["capacity"])
        for p in json.loads(args.plans)
    ]
    asyncio.run(run(plans, args.heartbeat, args.metrics_port))


if __name__ == "__main__":
    main()
