"""`rally agents provision ID`: a broker user of the agent's own, restricted to its inbox.

Three steps, in order:

1. the permission model (broker/access.py) gives the user's patterns;
2. ``rabbitmqctl`` creates the user (or changes its password), strips its tags and sets
   its permissions — or, with ``--print`` or where ``rabbitmqctl`` cannot reach the broker,
   the exact commands are printed for an operator to run on the broker host;
3. the agent's inbox queue is declared with the operator's connection (RALLY_AMQP_URL),
   since the agent's own user may not declare it (skipped with ``--print``).

The output is the AMQP URL the agent logs in with (and the password, when generated).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import shutil
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from broker.access import AgentGrant, agent_grant, broker_user, check_provisionable
from broker.connection import BrokerConnection
from broker.declare import declare_for_others, declare_topology
from broker.identity import reserved_users
from broker.nodes import parse_nodes
from broker.settings import BrokerSettings
from broker.topology import Topology
from broker.transport_errors import TransportError, transport_errors

PASSWORD_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits  # nothing a shell, a URL or an option parser minds


class ProvisionError(Exception):
    """Provisioning stopped part-way; the message says where and why."""


class CannotRun(Exception):
    """rabbitmqctl is missing, or may not talk to the broker from here."""


@dataclass(frozen=True, slots=True)
class Step:
    """One rabbitmqctl command; a secret goes on stdin when run, inline when printed."""

    argv: tuple[str, ...]
    secret: str | None = None

    def shell(self) -> str:
        if self.secret is None:
            return shlex.join(["rabbitmqctl", *self.argv])
        command, *args = self.argv
        end = ["--"] if self.secret.startswith("-") else []  # not an option, a password
        return shlex.join(["rabbitmqctl", command, *end, *args, self.secret])


def steps(grant: AgentGrant, password: str, *, exists: bool | None) -> list[Step]:
    """The commands, for a user that exists, does not, or may (None: printed for later)."""
    user, vhost = grant.user, grant.vhost
    # no tags: an existing user is never left a management or administrator user
    untag = [] if exists is False else [Step(("set_user_tags", user))]
    return [
        Step(("change_password", user) if exists else ("add_user", user), password),
        *untag,
        Step(("set_permissions", "-p", vhost, user, grant.configure, grant.write, grant.read)),
        Step(
            (
                "set_topic_permissions",
                "-p",
                vhost,
                user,
                grant.topic.exchange,
                grant.topic.write,
                grant.topic.read,
            )
        ),
    ]


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


class Rabbitmqctl:
    def __init__(self, executable: str = "rabbitmqctl", *, timeout_s: float = 60.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s

    async def _run(self, argv: Sequence[str], stdin: str | None = None) -> Ran:
        path = shutil.which(self.executable)
        if path is None:
            raise CannotRun(f"{self.executable} is not on PATH")
        try:
            proc = await asyncio.create_subprocess_exec(
                path,
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise CannotRun(f"{self.executable} {argv[0]}: {exc}") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate((stdin or "").encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CannotRun(
                f"{self.executable} {argv[0]}: no answer in {self.timeout_s}s"
            ) from None
        return Ran(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    async def user_exists(self, user: str) -> bool:
        """Also the probe that rabbitmqctl works here at all (CannotRun if not)."""
        done = await self._run(["list_users", "--quiet", "--formatter", "json"])
        if done.returncode != 0:
            raise CannotRun(_first_line(done.stderr or done.stdout))
        try:
            users = json.loads(done.stdout or "[]")
        except json.JSONDecodeError as exc:
            raise CannotRun(f"unexpected output from list_users: {exc}") from None
        return any(row.get("user") == user for row in users)

    async def apply(self, step: Step) -> None:
        done = await self._run(step.argv, step.secret)
        if done.returncode != 0:
            raise ProvisionError(
                f"rabbitmqctl {step.argv[0]} failed: {_first_line(done.stderr or done.stdout)}"
            )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and line != "Error:"]
    return lines[0] if lines else "no output"


def generate_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def url_for(amqp_url: str, *, user: str, password: str, vhost: str) -> str:
    """The operator's broker address (every node of a cluster) with the agent's credentials
    and vhost."""
    nodes = parse_nodes(amqp_url)
    login = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return replace(nodes, userinfo=login, path=_vhost_path(vhost)).compact()


def _vhost_path(vhost: str) -> str:
    return "/" if vhost == "/" else "/" + quote(vhost, safe="")


@dataclass(slots=True)
class Provisioned:
    grant: AgentGrant
    password: str
    generated: bool
    url: str
    steps: list[Step]
    applied: bool = False
    existed: bool | None = None  # None: not asked (printed only)
    not_applied_because: str = ""
    inbox_declared: bool = False
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        g = self.grant
        return {
            "agent_id": g.agent_id,
            "user": g.user,
            "vhost": g.vhost,
            "url": self.url,
            "password": self.password if self.generated else None,
            "password_generated": self.generated,
            "applied": self.applied,
            "user_existed": self.existed,
            "not_applied_because": self.not_applied_because or None,
            "inbox": g.inbox,
            "inbox_declared": self.inbox_declared,
            "permissions": {"configure": g.configure, "write": g.write, "read": g.read},
            "topic_permissions": {
                "exchange": g.topic.exchange,
                "write": g.topic.write,
                "read": g.topic.read,
            },
            "commands": [s.shell() for s in self.steps],
        }


async def declare_inbox(settings: BrokerSettings, agent_id: str) -> None:
    """The agent's inbox, with its dead-letter queue and bindings, by a user that may."""
    conn = await BrokerConnection(settings, role="provision").connect()
    inbox = conn.topology.inbox_queue(agent_id).name
    try:
        with transport_errors():
            await declare_topology(conn)
            await declare_for_others(conn, conn.topology.inbox_queue(agent_id))
    except TransportError as exc:
        raise ProvisionError(
            f"could not declare the inbox {inbox} as broker user "
            f"{broker_user(settings.amqp_url)!r} ({exc}); "
            "set RALLY_AMQP_URL to a user that may declare queues"
        ) from None
    finally:
        await conn.close()


async def provision(
    agent_id: str,
    *,
    settings: BrokerSettings,
    password: str | None = None,
    vhost: str | None = None,
    print_only: bool = False,
    ctl: Rabbitmqctl | None = None,
    env: Mapping[str, str] | None = None,
) -> Provisioned:
    operator = broker_user(settings.amqp_url)
    check_provisionable(agent_id, reserved=reserved_users(operator, env))
    if password is not None and not password:
        raise ProvisionError("--password must not be empty (an empty one disables the login)")
    vhost = vhost or vhost_of(settings.amqp_url)
    grant = agent_grant(agent_id, Topology(settings.namespace), vhost=vhost)
    generated = password is None
    secret = password if password is not None else generate_password()
    url = url_for(settings.amqp_url, user=grant.user, password=secret, vhost=vhost)
    result = Provisioned(grant, secret, generated, url, steps(grant, secret, exists=None))
    if print_only:
        result.not_applied_because = "--print"
        return result
    ctl = ctl or Rabbitmqctl()
    try:
        result.existed = await ctl.user_exists(grant.user)
    except CannotRun as exc:
        result.not_applied_because = str(exc)
    else:
        result.steps = steps(grant, secret, exists=result.existed)
        for step in result.steps:
            await ctl.apply(step)
        result.applied = True
    operator_settings = settings.model_copy(
        update={"amqp_url": _with_vhost(settings.amqp_url, vhost)}
    )
    await declare_inbox(operator_settings, agent_id)
    result.inbox_declared = True
    return result


def _with_vhost(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit((parts.scheme, parts.netloc, _vhost_path(vhost), parts.query, ""))


def render(result: Provisioned) -> str:
    """What a person reads: the commands when they must run them, else what was done."""
    g = result.grant
    lines: list[str] = []
    if not result.applied:
        if result.not_applied_because != "--print":
            lines.append(f"# rabbitmqctl cannot be used here ({result.not_applied_because});")
            lines.append("# run these on the broker host:")
        lines += [s.shell() for s in result.steps]
        lines.append(
            f"# if user {g.user!r} exists already, use change_password instead of add_user"
        )
        if not result.inbox_declared:
            lines.append(
                f"# the agent may not declare its inbox {g.inbox}: run `rally agents provision "
                f"{shlex.quote(g.agent_id)} --password ...` without --print once, where "
                "RALLY_AMQP_URL may declare queues"
            )
    else:
        done = "password changed" if result.existed else "created"
        lines.append(f"user {g.user} on vhost {g.vhost}: {done}")
        lines.append(f"  configure {g.configure}   write {g.write}   read {g.read}")
        lines.append(f"  topic {g.topic.exchange}: write {g.topic.write}   read {g.topic.read}")
    if result.inbox_declared:
        lines.append(f"inbox {g.inbox}: declared")
    if result.generated:
        lines.append(f"password: {result.password}")
    lines.append(f"url: {result.url}")
    return "\n".join(lines)
