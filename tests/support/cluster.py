"""A private three-node RabbitMQ cluster for the cluster fault tests.

Three nodes of the installed server, each with its own node name, AMQP and
distribution ports and data directory (like :class:`PrivateRabbit`), joined with
``rabbitmqctl stop_app / join_cluster / start_app``. They run as the same system
user, so they share its Erlang cookie. Every command names one of our nodes:
the machine's shared RabbitMQ on 5672 is never touched. ``close()`` stops them
and removes their directories, whatever state a test left them in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.services import (
    RABBIT_BIN,
    START_TIMEOUT_S,
    ServiceUnavailable,
    _as_user,
    _private_dir,
    _stop_process,
    _system_user,
    free_port,
)


class ClusterNode:
    """One node: start, stop (cleanly), kill -9, start again on the same data."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name  # rally-cluster-xxxx-1@localhost
        self.base = base
        self.port, self.dist_port = free_port(), free_port()
        self._server: subprocess.Popen[bytes] | None = None
        self._starts = 0
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            # lean: one machine holds three nodes and a fleet
            "collect_statistics_interval = 30000\n"
        )
        (base / "rabbitmq-env.conf").write_text("")
        (base / "enabled_plugins").write_text("[].\n")
        user = _system_user("rabbitmq")
        if os.geteuid() == 0 and user is not None:
            for path in base.iterdir():
                os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        base = self.base
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # two schedulers each: three nodes share two cores with the fleet
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 2:2 +A 8",
        }

    def launch(self) -> None:
        """Start the server in the foreground, in its own session; does not wait for it."""
        self._starts += 1
        log = open(self.base / f"server.{self._starts}.out", "wb")  # noqa: SIM115 - kept by it
        self._server = subprocess.Popen(
            _as_user("rabbitmq", [str(RABBIT_BIN / "rabbitmq-server")]),
            env=self._env(),
            cwd=self.base,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def await_up(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._server is None or self._server.poll() is not None:
                out = self.base / f"server.{self._starts}.out"
                tail = out.read_text(errors="replace")[-1500:] if out.exists() else ""
                raise ServiceUnavailable(f"cluster node {self.name} exited at start:\n{tail}")
            done = subprocess.run(
                self._ctl_cmd("await_startup", "--timeout", "20"), capture_output=True, timeout=40
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"cluster node {self.name} not up in {timeout:.0f}s")
            time.sleep(0.5)

    def _ctl_cmd(self, *args: str) -> list[str]:
        return _as_user("rabbitmq", [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args])

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        done = subprocess.run(self._ctl_cmd(*args), capture_output=True, timeout=timeout)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-800:]
            raise RuntimeError(f"rabbitmqctl -n {self.name} {' '.join(args)}: {output}")
        return done.stdout.decode(errors="replace")

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def stop(self) -> None:
        """A clean shutdown of the whole node (``rabbitmqctl stop``); its data stays."""
        if self._server is None:
            return
        server, self._server = self._server, None
        if server.poll() is None:
            with contextlib.suppress(Exception):
                subprocess.run(self._ctl_cmd("stop"), capture_output=True, timeout=60)
            _stop_process(server, timeout=30)

    def kill(self) -> None:
        """``kill -9`` the node's Erlang VM: no goodbye to clients or peers."""
        beam = int((self.base / "rabbit.pid").read_text().strip())
        os.kill(beam, signal.SIGKILL)
        if self._server is not None:
            _stop_process(self._server, timeout=15)
            self._server = None

    def restart(self) -> None:
        """Start again on the same name, ports and data: it rejoins the cluster."""
        self.launch()
        self.await_up()


class PrivateCluster:
    """Three joined nodes of our own; ``url`` names them all (RALLY_AMQP_URL's node list)."""

    def __init__(self, nodes: list[ClusterNode], base: Path) -> None:
        self.nodes = nodes
        self.base = base

    @classmethod
    def start(cls, size: int = 3) -> PrivateCluster:
        for tool in ("rabbitmq-server", "rabbitmqctl"):
            if not (RABBIT_BIN / tool).exists():
                raise ServiceUnavailable(f"no {tool} in {RABBIT_BIN}")
        base = _private_dir("rally-cluster-", "rabbitmq")
        tag = uuid.uuid4().hex[:6]
        nodes = []
        for i in range(1, size + 1):
            home = base / f"n{i}"
            home.mkdir()
            user = _system_user("rabbitmq")
            if os.geteuid() == 0 and user is not None:
                os.chown(home, user.pw_uid, user.pw_gid)
            nodes.append(ClusterNode(f"rally-cluster-{tag}-{i}@localhost", home))
        cluster = cls(nodes, base)
        try:
            for node in nodes:  # started together: each takes seconds to boot
                node.launch()
            for node in nodes:
                node.await_up()
            for node in nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", nodes[0].name)
                node.ctl("start_app")
                node.ctl("await_startup", "--timeout", "60")
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def url(self) -> str:
        """Every node, in the compact spelling RALLY_AMQP_URL accepts."""
        return "amqp://guest:guest@" + ",".join(n.address for n in self.nodes) + "/"

    def any_running(self) -> ClusterNode:
        return next(n for n in self.nodes if n.running)

    def by_port(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def by_name(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def running_members(self) -> list[str]:
        status = json.loads(self.any_running().ctl("cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def connections(self) -> Iterator[tuple[str, ClusterNode]]:
        """(connection name given by the client, node it is on) for every client connection."""
        out = self.any_running().ctl(
            "list_connections", "port", "client_properties", "--formatter", "json"
        )
        for row in json.loads(out):
            props = row.get("client_properties") or []
            name = next((p[2] for p in props if p[0] == "connection_name"), "")
            yield str(name), self.by_port(int(row["port"]))

    def node_of(self, connection_prefix: str) -> ClusterNode:
        """The node a client's connection (by the start of its name) is on."""
        for name, node in self.connections():
            if name.startswith(connection_prefix):
                return node
        raise LookupError(f"no connection named {connection_prefix}*")

    def leader_of(self, queue: str, vhost: str = "/") -> ClusterNode:
        out = self.any_running().ctl(
            "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
        )
        for row in json.loads(out):
            if row["name"] == queue:
                return self.by_name(str(row["leader"]))
        raise LookupError(f"no queue {queue}")

    def leaders(self, prefix: str, vhost: str = "/") -> dict[str, str]:
        """queue → its leader's node name, for the queues whose name starts with prefix."""
        out = self.any_running().ctl(
            "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
        )
        return {
            str(r["name"]): str(r["leader"])
            for r in json.loads(out)
            if str(r["name"]).startswith(prefix)
        }

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(self.base, ignore_errors=True)
