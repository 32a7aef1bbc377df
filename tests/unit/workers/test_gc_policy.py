"""A worker process sets the garbage collector from RALLY_GC_THRESHOLDS, or says what is wrong."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from workers.runtime import gc_policy


def test_default_python_and_custom_thresholds() -> None:
    assert gc_policy.thresholds(None) == gc_policy.DEFAULT
    assert gc_policy.thresholds(" ") == gc_policy.DEFAULT
    assert gc_policy.thresholds("Python") is None
    assert gc_policy.thresholds("5000,20,30") == (5000, 20, 30)


@pytest.mark.parametrize("bad", ["1,2", "a,b,c", "0,10,10", "100,-1,10", "1,2,3,4"])
def test_a_bad_value_is_refused_with_what_to_give(bad: str) -> None:
    with pytest.raises(ValueError, match="three whole numbers"):
        gc_policy.thresholds(bad)


def test_apply_sets_them_and_python_leaves_them() -> None:
    before = gc.get_threshold()
    try:
        assert gc_policy.apply("python") is None
        assert gc.get_threshold() == before
        assert gc_policy.apply("12345,6,7") == (12345, 6, 7)
        assert gc.get_threshold() == (12345, 6, 7)
        assert gc.get_freeze_count() > 0  # what was loaded is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_worker_refuses_to_start_on_a_bad_value() -> None:
    env = {**os.environ, "RALLY_GC_THRESHOLDS": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "workers.runtime.process", "--worker", "tasks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "RALLY_GC_THRESHOLDS='lots'" in done.stderr
