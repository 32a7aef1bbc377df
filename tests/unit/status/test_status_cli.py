"""`rally status` refuses sampling options it cannot honour, before touching anything."""

from __future__ import annotations

import pytest

from workers.cli.main import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0"], "--interval must be above 0 seconds"),
        (["--interval", "-2"], "--interval must be above 0 seconds"),
        (["--interval", "inf"], "--interval must be above 0 seconds and finite"),
        (["--drain-target", "0"], "drain target must be above 0 seconds"),
        (["--max-replicas", "0"], "replica bound must be at least 1"),
    ],
)
def test_bad_sampling_options_are_one_clear_sentence_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        # checked before any I/O; unchecked, the sampling would fail later with a traceback
        main(["status", "--store", "sqlite:///:memory:", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rally: ")
    assert message in err
