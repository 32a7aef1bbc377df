"""`rally conformance --agent-cmd CMD`: check an agent implementation against a private fleet.

The kit and the contract the agent implements: docs/protocol.md, "Checking an
implementation"; the scenarios: workers/conformance/.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from broker.settings import BrokerSettings
from workers.cli.main import UserError
from workers.conformance.fleet import FleetError
from workers.conformance.report import footer, header, json_line, line
from workers.conformance.runner import SCENARIOS, UnknownScenario, Verdict, choose, run_scenarios
from workers.runtime.logs import quiet_logs


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "conformance",
        help="check an agent implementation (any language) against a private fleet",
        description="Start a private fleet, run the agent under test with --agent-cmd in each "
        "scenario, and judge each from the event history. Exit 0 only if all passed.",
    )
    parser.add_argument(
        "--agent-cmd", required=True, help="shell command that starts the agent under test"
    )
    parser.add_argument(
        "--scenarios", default=None, help=f"comma-separated subset of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument(
        "--timeout", type=float, default=40.0, help="seconds per scenario (default 40)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    try:
        names = choose(args.scenarios)
    except UnknownScenario as exc:
        raise UserError(str(exc)) from None
    if args.timeout <= 0:
        raise UserError("--timeout must be positive")

    def show(verdict: Verdict) -> None:
        print(json_line(verdict) if args.json else line(verdict), flush=True)

    if not args.json:
        print(header(), flush=True)
    try:
        verdicts, log_dir = asyncio.run(
            run_scenarios(
                args.agent_cmd,
                names,
                amqp_url=BrokerSettings.from_env().amqp_url,
                timeout_s=args.timeout,
                on_verdict=show,
            )
        )
    except FleetError as exc:
        raise UserError(f"the conformance fleet: {exc}") from None
    print(footer(verdicts, log_dir), file=sys.stderr if args.json else sys.stdout)
    return 0 if all(v.passed for v in verdicts) else 1
