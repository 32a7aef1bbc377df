"""Where a demo run keeps its store: pure derivation from RALLY_STORE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.demo.where import Explore, rally_program, run_store_url

RUN = Path("var/demo/demo-ab12cd34")


def test_default_is_a_file_of_the_run() -> None:
    assert run_store_url({}, RUN, "demo-ab12cd34") == f"sqlite:///{RUN / 'rally.db'}"


def test_postgresql_gets_a_schema_of_its_own() -> None:
    url = run_store_url(
        {"RALLY_STORE_URL": "postgresql://postgres@127.0.0.1:5432/test?schema=old&sslmode=disable"},
        RUN,
        "demo-ab12cd34",
    )
    assert url == "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable&schema=demo_ab12cd34"


def test_sqlite_gets_a_file_beside_the_one_named() -> None:
    url = run_store_url({"RALLY_STORE_URL": "sqlite:///data/rally.db"}, RUN, "demo-ab12cd34")
    assert url == "sqlite:///data/rally-demo-ab12cd34.db"


def test_other_stores_are_refused() -> None:
    with pytest.raises(ValueError, match="sqlite or postgresql"):
        run_store_url({"RALLY_STORE_URL": "mysql://x/y"}, RUN, "demo-ab12cd34")


def test_explore_names_store_namespace_and_poison_task() -> None:
    commands = Explore("sqlite:///x.db", "demo-1", "1234").commands()
    assert commands["dead_letters"].startswith(
        "RALLY_STORE_URL=sqlite:///x.db RALLY_NAMESPACE=demo-1"
    )
    assert commands["poison_timeline"].endswith("rally task show 1234")


def test_the_commands_name_the_cli_as_this_shell_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    venv_rally = tmp_path / ".venv" / "bin" / "rally"
    venv_rally.parent.mkdir(parents=True)
    venv_rally.touch()
    assert rally_program(str(venv_rally), None) == ".venv/bin/rally"  # make demo, no venv active
    assert rally_program(str(venv_rally), str(venv_rally)) == "rally"  # the venv is active
    assert rally_program("/x/workers/cli/main.py", None) == "rally"
    commands = Explore("sqlite:///x.db", "demo-1", None, ".venv/bin/rally").commands()
    assert commands["history"].endswith(".venv/bin/rally events dump")
