"""Private RabbitMQ and PostgreSQL servers for the destructive fault tests.

Other tests share the RabbitMQ on 5672 and the PostgreSQL on 5432; the fault
suite stops, blocks and closes things, so it starts its own servers: each in
a temporary directory, on free ports, under its own node name. Every
destructive command (``stop_app``, ``close_all_connections``, a memory alarm,
``pg_ctl stop``) names that private server and nothing else.

Both servers refuse to run as root, so when the tests run as root they run
the servers as the ``rabbitmq`` / ``postgres`` system users. Anything missing
(binaries, users, a server that does not come up) raises
:class:`ServiceUnavailable` with the reason; the fixtures turn that into a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 60.0


class ServiceUnavailable(Exception):
    """A private server could not be started; the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _system_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _as_user(user: str, cmd: Sequence[str]) -> list[str]:
    """Run ``cmd`` as ``user`` when we are root (the servers refuse root); as is otherwise."""
    if os.geteuid() != 0:
        return list(cmd)
    if _system_user(user) is None:
        raise ServiceUnavailable(f"running as root and there is no {user!r} user to run as")
    return ["runuser", "-u", user, "--", *cmd]


def _private_dir(prefix: str, owner: str) -> Path:
    # not under pytest's tmp_path: that is private to root (0700) and the server user must enter
    path = Path(tempfile.mkdtemp(prefix=prefix))
    user = _system_user(owner)
    if os.geteuid() == 0 and user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
        proc.wait(timeout=10)


class PrivateRabbit:
    """One RabbitMQ node of our own: ``url`` to connect, methods to hurt it."""

    def __init__(self, base: Path, node: str, port: int) -> None:
        self.base = base
        self.node = node
        self.port = port
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"
        self._server: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls) -> PrivateRabbit:
        server = RABBIT_BIN / "rabbitmq-server"
        if not server.exists() or not (RABBIT_BIN / "rabbitmqctl").exists():
            raise ServiceUnavailable(f"no RabbitMQ server scripts in {RABBIT_BIN}")
        base = _private_dir("rally-faults-rabbit-", "rabbitmq")
        node = f"rally-faults-{uuid.uuid4().hex[:8]}@localhost"
        port, dist_port = free_port(), free_port()
        # our own config: the system one names the shared node's listener (5672)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"
        )
        (base / "rabbitmq-env.conf").write_text("")
        (base / "enabled_plugins").write_text("[].\n")
        user = _system_user("rabbitmq")
        if os.geteuid() == 0 and user is not None:
            for path in base.iterdir():
                os.chown(path, user.pw_uid, user.pw_gid)
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        rabbit = cls(base, node, port)
        log = open(base / "server.out", "wb")  # noqa: SIM115 - lives as long as the server
        # in the foreground, in its own session: we hold its pid and can always end it
        rabbit._server = subprocess.Popen(
            _as_user("rabbitmq", [str(server)]),
            env=env,
            cwd=base,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rabbit._await_startup()
        except BaseException:
            rabbit.stop()
            raise
        return rabbit

    def _await_startup(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self._server is not None
            if self._server.poll() is not None:
                tail = (self.base / "server.out").read_text(errors="replace")[-1500:]
                raise ServiceUnavailable(f"private RabbitMQ exited at start:\n{tail}")
            done = subprocess.run(
                self._ctl_cmd("await_startup", "--timeout", "20"),
                capture_output=True,
                timeout=40,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"private RabbitMQ {self.node} not up within {START_TIMEOUT_S:.0f}s: "
                    f"{done.stderr.decode(errors='replace')[-500:]}"
                )
            time.sleep(0.5)  # not yet registered with epmd: await_startup fails at once

    def _ctl_cmd(self, *args: str) -> list[str]:
        return _as_user("rabbitmq", [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args])

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <our node> ...``; raises with its output if it fails."""
        done = subprocess.run(self._ctl_cmd(*args), capture_output=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).decode(errors='replace')[-800:]}"
            )
        return done.stdout.decode(errors="replace")

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")

    def close_all_connections(self, why: str = "fault injection") -> None:
        self.ctl("close_all_connections", why)

    def memory_alarm(self, on: bool) -> None:
        """A watermark of 0 raises the memory alarm at once: every publisher is blocked."""
        self.ctl("set_vm_memory_high_watermark", "0" if on else "0.4")

    def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        if server.poll() is None:
            with contextlib.suppress(Exception):
                subprocess.run(self._ctl_cmd("stop"), capture_output=True, timeout=60)
            _stop_process(server, timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise ServiceUnavailable("no PostgreSQL server binaries (pg_ctl) found")


def _version_key(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class PrivatePostgres:
    """A PostgreSQL server of our own in a temporary directory: stop and start it at will."""

    def __init__(self, base: Path, bindir: Path, port: int) -> None:
        self.base = base
        self.bindir = bindir
        self.port = port
        self.data = base / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.running = False

    @classmethod
    def start(cls) -> PrivatePostgres:
        bindir = _pg_bin()
        base = _private_dir("rally-faults-pg-", "postgres")
        pg = cls(base, bindir, free_port())
        try:
            pg._run("initdb", "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync")
            pg.resume()
        except BaseException:
            pg.close()
            raise
        return pg

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        done = subprocess.run(
            _as_user("postgres", [str(self.bindir / tool), *args]),
            capture_output=True,
            timeout=timeout,
            cwd=self.base,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-800:]
            raise ServiceUnavailable(f"{tool} {' '.join(args)} failed: {output}")

    def resume(self) -> None:
        """Start (again) on the same port and data directory."""
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-o",
            options, "start",
        )  # fmt: skip
        self.running = True

    def halt(self) -> None:
        """Stop now: every client connection is cut, new ones are refused until resume()."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.base, ignore_errors=True)
