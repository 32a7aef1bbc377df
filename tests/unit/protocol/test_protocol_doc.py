"""docs/protocol.md against the code: the names, keys, fields and arguments it gives are real.

Reads the document's tables and message lines and checks them against what the workers
send and accept: contracts/headers.py, the contracts registry and its schema
annotations, the topology's inbox arguments, and the bundle codec.
"""

from __future__ import annotations

import json
import re

from broker.topology import Topology
from contracts import all_types, encode_bundle
from contracts import headers as h
from contracts.bundle import BundleMember
from contracts.schema import message_annotations
from tests.support.paths import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text()


def table_first_cells() -> list[str]:
    return re.findall(r"^\| `([^`]+)`", DOC, flags=re.M)


def test_every_x_rally_header_is_documented_and_every_documented_one_exists() -> None:
    documented = {c for c in table_first_cells() if c.startswith(h.RESERVED_PREFIX)}
    defined = {
        value
        for name, value in vars(h).items()
        if name.isupper()
        and isinstance(value, str)
        and value.startswith(h.RESERVED_PREFIX)
        and value != h.RESERVED_PREFIX
    }
    assert documented == defined


def test_command_routing_keys_match_the_contracts() -> None:
    notes = message_annotations()
    rows = re.findall(r"^\| (`[A-Z][^|]+) \| `([^`]+)` \|", DOC, flags=re.M)
    assert rows
    for names, key in rows:
        for name in re.findall(r"`([A-Za-z]+)`", names):
            assert name in notes, name
            assert notes[name]["kind"] == "command", name
            assert key.replace("<Type>", name) == notes[name]["routing_key"], name


def test_every_field_named_in_a_message_line_exists() -> None:
    types = all_types()
    found = 0
    for name, fields in re.findall(r"`([A-Z][A-Za-z]+) \{([^}`]*)\}", DOC):
        assert name in types, name
        model_fields = set(types[name].model_fields)
        for field in re.findall(r"[a-z_]+", re.sub(r"\([^)]*\)|\{[^}]*\}?|:[^,]*", "", fields)):
            assert field in model_fields, f"{name}.{field}"
        found += 1
    assert found >= 10


def test_the_inbox_arguments_are_the_ones_the_workers_declare() -> None:
    block = re.search(r"\n((?:    x-[^\n]+\n)+)", DOC)
    assert block is not None
    documented = dict(line.split(None, 1) for line in block.group(1).strip().splitlines())
    topology = Topology("ns")
    spec = topology.inbox_queue("<agent_id>")
    declared = {k: str(v) for k, v in topology.queue_arguments(spec, 10).items()}
    assert {k: v.strip() for k, v in documented.items()} == declared


def test_the_bundle_member_line_is_the_codecs() -> None:
    body = encode_bundle(
        [BundleMember(b"{}", message_id="i", type="T", correlation_id="c", headers={"k": "v"})]
    )
    line = json.loads(body.split(b"\n", 1)[0])
    for key in line:
        assert f"`{key}`" in DOC, key
    assert "application/vnd.rally.bundle" in DOC


def test_envelope_fields_are_the_contracts() -> None:
    envelope = re.search(r'```json\n(\{"id".*?)```', DOC, flags=re.S)
    assert envelope is not None
    keys = set(re.findall(r'"([a-z_]+)":', envelope.group(1).split('"payload"')[0]))
    from contracts import Envelope

    assert keys | {"payload"} == set(Envelope.model_fields)
