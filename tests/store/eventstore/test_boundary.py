"""The store stands alone: it imports nothing of the broker, and the runner's boundary
turns its outage into the consumer's ``DependencyUnavailable``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import workers.store
from broker.errors import DependencyUnavailable
from workers.runtime.dependencies import HandlerStore, StoreDown
from workers.store import StoreError, StoreUnavailable, open_store


def test_the_store_imports_nothing_of_the_broker() -> None:
    package = Path(workers.store.__file__).parent
    found = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "broker"]
    assert found == []
    assert not issubclass(StoreUnavailable, DependencyUnavailable)


async def test_a_store_that_is_down_is_a_dependency_unavailable_behind_the_boundary() -> None:
    store = HandlerStore(open_store("postgresql://postgres@127.0.0.1:1/nothing"))
    with pytest.raises(StoreDown) as info:
        await store.start()
    # both trees at once: the consumer holds the message, store-aware code still catches it
    assert isinstance(info.value, DependencyUnavailable)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value.__cause__, StoreUnavailable)
