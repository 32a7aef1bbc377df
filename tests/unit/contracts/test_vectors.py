"""The published test vectors (contracts/vectors/): the Python codec gives every verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import contracts as c

VECTORS = Path(c.__file__).parent / "vectors"
VERDICTS = {"ok", "malformed", "invalid", "unknown_type", "unknown_version", "too_large"}


def load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())["vectors"]
    return vectors


def verdict(body: bytes, max_bytes: int = c.DEFAULT_MAX_BYTES) -> str:
    try:
        c.decode(body, max_bytes=max_bytes)
    except c.ContractError as exc:
        return exc.reason
    return "ok"


@pytest.mark.parametrize("vector", load("envelopes.json"), ids=lambda v: v["name"])
def test_envelope_vectors(vector: dict[str, Any]) -> None:
    assert vector["verdict"] in VERDICTS
    body = vector["body"].encode()
    assert verdict(body, vector.get("max_bytes", c.DEFAULT_MAX_BYTES)) == vector["verdict"]
    if vector["verdict"] == "ok":
        assert c.decode(body).type == vector["type"]


@pytest.mark.parametrize("vector", load("bundles.json"), ids=lambda v: v["name"])
def test_bundle_vectors(vector: dict[str, Any]) -> None:
    assert vector["verdict"] in VERDICTS
    body, limit = vector["body"].encode(), vector.get("max_members", 10_000)
    if vector["verdict"] != "ok":
        with pytest.raises(c.ContractError) as caught:
            c.decode_bundle(body, max_members=limit)
        assert caught.value.reason == vector["verdict"]
        return
    members = c.decode_bundle(body, max_members=limit)
    got = [
        {"id": m.message_id, "type": m.type, "cid": m.correlation_id, "verdict": verdict(m.body)}
        for m in members
    ]
    assert got == vector["members"]


def test_every_verdict_has_a_vector() -> None:
    seen = {v["verdict"] for v in load("envelopes.json") + load("bundles.json")}
    member = {m["verdict"] for v in load("bundles.json") for m in v.get("members", [])}
    assert seen | member == VERDICTS
