"""One SDK agent in its own OS process, whose handler returns at once.

python -m workers.bench.agent_proc --agent-id bench-agent-0 --capacity 256 --metrics-port 9102

The broker and namespace come from RALLY_* variables, as for any agent. Runs
until SIGTERM or SIGINT, then drains and leaves like any agent. Its publishes
are counted (:mod:`workers.bench.counting`) and served with its metrics.
"""

from __future__ import annotations

import argparse
import asyncio

from broker.logs import configure_logging
from broker.metrics import port_number
from sdk import Agent, Task
from workers.bench.counting import install

CAPABILITY = "bench.noop"


async def noop(task: Task) -> None:
    return None


def build_agent(
    agent_id: str, capacity: int, heartbeat_s: float, metrics_port: int | None = None
) -> Agent:
    agent = Agent(
        agent_id,
        capacity=capacity,
        heartbeat_interval_s=heartbeat_s,
        software_version="bench",
        metrics_port=metrics_port,
    )
    agent.add_capability(CAPABILITY, noop)
    return agent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.bench.agent_proc")
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--capacity", type=int, default=256)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--metrics-port", type=port_number, default=None)
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    install()
    agent = build_agent(args.agent_id, args.capacity, args.heartbeat, args.metrics_port)
    asyncio.run(agent.run())


if __name__ == "__main__":
    main()
