"""Run the chosen scenarios one after another on one private fleet, each with its own agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from workers.conformance import basic, faults
from workers.conformance.context import Ctx, Skipped
from workers.conformance.fleet import Fleet
from workers.conformance.history import Unmet

Scenario = Callable[[Ctx], Awaitable[str]]

# in the order they run: the simple ones first, so a broken agent fails early and plainly
SCENARIOS: dict[str, Scenario] = {
    "assignment": basic.assignment,
    "progress": basic.progress,
    "failure": basic.failure,
    "stop_task": basic.stop_task,
    "timeout": basic.timeout,
    "bundle_bad_member": basic.bundle_bad_member,
    "stale_token": faults.stale_token,
    "connection_drop": faults.connection_drop,
    "drain": faults.drain,
    "provisioned": faults.provisioned,
}

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Verdict:
    scenario: str
    status: Status
    reason: str
    seconds: float
    agent_log: str | None = None  # kept when the scenario did not pass

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


class UnknownScenario(ValueError):
    pass


def choose(names: str | None) -> list[str]:
    if not names:
        return list(SCENARIOS)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        raise UnknownScenario(
            f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return chosen


async def run_scenarios(
    agent_cmd: str,
    names: list[str],
    *,
    amqp_url: str,
    timeout_s: float,
    on_verdict: Callable[[Verdict], None] = lambda _: None,
) -> tuple[list[Verdict], str]:
    """Every verdict, and where the logs are (kept only when a scenario did not pass)."""
    fleet = Fleet(agent_cmd, amqp_url)
    verdicts: list[Verdict] = []
    try:
        await fleet.start()
        if "provisioned" in names:
            fleet.provisioning = faults.start_provisioning(fleet)
        for name in names:
            verdict = await _one(fleet, name, timeout_s)
            verdicts.append(verdict)
            on_verdict(verdict)
    finally:
        fleet.keep_dir = not verdicts or not all(v.passed for v in verdicts)
        await fleet.close()
    return verdicts, str(fleet.run_dir)


async def _one(fleet: Fleet, name: str, timeout_s: float) -> Verdict:
    ctx = Ctx(fleet, name, timeout_s)
    started = time.monotonic()
    status: Status = "failed"
    reason = "not run"
    try:
        async with asyncio.timeout(timeout_s):
            reason = await SCENARIOS[name](ctx)
        status = "passed"
    except Unmet as exc:
        reason = str(exc)
    except Skipped as exc:
        status, reason = "skipped", str(exc)
    except TimeoutError:
        reason = f"no verdict within {timeout_s:g}s"
    except Exception as exc:  # the kit's own failure is this scenario's verdict, not a crash
        reason = f"the kit failed: {type(exc).__name__}: {exc}"
    finally:
        for launched in ctx.launched:
            fleet.proxies.remove(launched.proxy)
            await launched.proxy.close()
            try:
                await fleet.retire(launched.process)
            except Exception as exc:  # a later scenario may land on it: say so, go on
                reason = f"{reason}; could not take the agent out: {exc}"
    crashed = fleet.crashed_workers()
    if crashed:
        status, reason = "failed", f"{reason}; a worker died ({', '.join(crashed)})"
    log = str(ctx.launched[-1].process.log_path) if ctx.launched and status != "passed" else None
    return Verdict(name, status, reason, round(time.monotonic() - started, 1), log)
