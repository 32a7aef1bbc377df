"""The demo's fleet and workload, decided up front and with no I/O, so it can be checked.

Agents have mixed capabilities (every capability on at least three agents, so
losing one strands nothing). Tasks mix independent work, dependency chains,
work that needs the scarce ``gpu`` resource (capacity 2), tasks that fail
once and are retried, one poison task that always fails (it ends dead) and
one task that depends on the poison (it ends cancelled).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

CAPABILITIES = ("crawl", "parse", "summarize", "render")
GPU = "gpu"
GPU_CAPACITY = 2

Expected = Literal["succeeded", "cancelled", "dead"]


@dataclass(frozen=True)
class AgentPlan:
    agent_id: str
    capabilities: tuple[str, ...]
    capacity: int


@dataclass(frozen=True)
class TaskPlan:
    key: str  # the demo's own name for the task, e.g. "chain-12-2"
    capability: str
    payload: dict[str, Any]
    expected: Expected
    depends_on: tuple[str, ...] = ()  # keys of earlier tasks
    resources: tuple[str, ...] = ()
    max_attempts: int = 3
    priority: int = 0


@dataclass(frozen=True)
class Scenario:
    agents: tuple[AgentPlan, ...]
    tasks: tuple[TaskPlan, ...]
    victim: str  # the agent killed mid-run
    expected: dict[str, int] = field(default_factory=dict)


def build(agents: int = 12, tasks: int = 1000, seed: int = 7) -> Scenario:
    if agents < 4:
        raise ValueError("the demo needs at least 4 agents (one of them is killed)")
    if tasks < 10:
        raise ValueError("the demo needs at least 10 tasks")
    rng = random.Random(seed)
    plans = tuple(_agent(i, rng) for i in range(agents))
    work = _tasks(tasks, rng)
    expected: dict[str, int] = {"succeeded": 0, "cancelled": 0, "dead": 0}
    for task in work:
        expected[task.expected] += 1
    return Scenario(plans, tuple(work), victim=plans[0].agent_id, expected=expected)


def _agent(index: int, rng: random.Random) -> AgentPlan:
    # rotate capability pairs so each capability lands on about half the fleet
    caps = {CAPABILITIES[index % 4], CAPABILITIES[(index + 1) % 4]}
    if index % 3 == 0:
        caps.add(CAPABILITIES[(index + 2) % 4])
    return AgentPlan(f"agent-{index:02d}", tuple(sorted(caps)), capacity=rng.choice((2, 3, 4)))


def _tasks(total: int, rng: random.Random) -> list[TaskPlan]:
    out: list[TaskPlan] = [
        TaskPlan("poison", "parse", {"poison": True}, "dead", max_attempts=3),
        TaskPlan("after-poison", "summarize", {"ms": 1}, "cancelled", depends_on=("poison",)),
    ]
    chain = 0
    while len(out) < total:
        roll = rng.random()
        left = total - len(out)
        if roll < 0.2 and left >= 3:
            keys = [f"chain-{chain}-{step}" for step in range(3)]
            for step, capability in enumerate(("crawl", "parse", "summarize")):
                deps = (keys[step - 1],) if step else ()
                out.append(
                    TaskPlan(keys[step], capability, _work(rng), "succeeded", depends_on=deps)
                )
            chain += 1
        elif roll < 0.26:
            out.append(
                TaskPlan(f"render-{len(out)}", "render", _work(rng), "succeeded", resources=(GPU,))
            )
        elif roll < 0.32:
            payload = {**_work(rng), "fail_attempts": 1}
            out.append(
                TaskPlan(f"flaky-{len(out)}", rng.choice(CAPABILITIES[:3]), payload, "succeeded")
            )
        else:
            out.append(
                TaskPlan(
                    f"work-{len(out)}",
                    rng.choice(CAPABILITIES),
                    _work(rng),
                    "succeeded",
                    priority=rng.choice((0, 0, 0, 5)),
                )
            )
    return out


def _work(rng: random.Random) -> dict[str, Any]:
    return {"ms": rng.randint(5, 30)}
