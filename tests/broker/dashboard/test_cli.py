"""`rally dashboard` as an operator runs it: a process that prints its URL and serves until ^C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.settings import BrokerSettings
from workers.cli.main import build_parser

pytestmark = pytest.mark.broker


def rally(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    # as the `rally` entry point calls it (under `-m`, main.py's UserError would be __main__'s)
    entry = "import sys; from workers.cli.main import main; main(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", entry, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def env(broker_settings: BrokerSettings, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RALLY_AMQP_URL": broker_settings.amqp_url,
        "RALLY_NAMESPACE": broker_settings.namespace,
        "RALLY_STORE_URL": f"sqlite:///{tmp_path}/rally.db",
    }


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_it_prints_its_url_serves_the_api_and_stops_on_ctrl_c(
    env: dict[str, str], broker_settings: BrokerSettings
) -> None:
    proc = rally("dashboard", "--port", "0", "--refresh", "0.5", env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("rally dashboard: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/overview", timeout=10) as response:
            overview = json.load(response)
        assert overview["namespace"] == broker_settings.namespace
        assert overview["refresh_s"] == 0.5
        assert overview["tasks"]["total"] == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130  # as every rally command on Ctrl-C
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_stops_it_cleanly(env: dict[str, str]) -> None:
    proc = rally("dashboard", "--port", "0", env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("rally dashboard: http://")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_one_clear_sentence(env: dict[str, str], busy_port: int) -> None:
    proc = rally("dashboard", "--port", str(busy_port), env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"port {busy_port} on 127.0.0.1 is in use" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["--refresh", "0"], ["--refresh", "soon"], ["--port", "70000"]])
def test_bad_flags_are_refused_before_anything_starts(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["dashboard", *argv])
    assert exit_.value.code == 2
    assert "rally dashboard: error: argument --" in capsys.readouterr().err
