"""docs/protocol.md against the code: the names, keys, fields and arguments it gives are real.

Reads the document's tables and message lines and checks them against what the workers
send and accept: contracts/headers.py, the contracts registry and its schema
annotations, the registry slots (contracts/shards.py and its vectors) and the publisher's
routing keys, the topology's inbox arguments, and the bundle codec.
"""

from __future__ import annotations

import json
import re
from typing import Any

from broker.publisher import routing_key_for
from broker.topology import REGISTRY_COMMAND_TYPES, Topology
from contracts import all_types, encode_bundle
from contracts import headers as h
from contracts.bundle import BundleMember
from contracts.schema import message_annotations
from contracts.shards import SLOTS, fnv1a_32, slot_of
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


def command_rows() -> list[tuple[str, str]]:
    """(command, routing key as documented) per command named in the routing-key table."""
    rows = re.findall(r"^\| (`[A-Z][^|]+) \| `([^`]+)` \|", DOC, flags=re.M)
    return [
        (name, key.replace("<Type>", name))
        for names, key in rows
        for name in re.findall(r"`([A-Za-z]+)`", names)
    ]


def test_command_routing_keys_match_the_contracts() -> None:
    notes = message_annotations()
    rows = command_rows()
    assert rows
    for name, key in rows:
        assert name in notes, name
        assert notes[name]["kind"] == "command", name
        unslotted = key.removesuffix(".<slot>")
        assert unslotted == notes[name]["routing_key"], name


def test_the_slotted_commands_are_the_ones_the_publisher_slots() -> None:
    """What the table gives a slot is what the Python publisher sends with one, and what the
    registry's shard 0 takes unslotted: no more, no fewer."""
    types = all_types()
    agent_id = "agent-1"
    slotted = {name for name, key in command_rows() if key.endswith(".<slot>")}
    assert slotted == set(REGISTRY_COMMAND_TYPES)
    for name, key in command_rows():
        fields: dict[str, Any] = {}
        if "agent_id" in types[name].model_fields:
            fields["agent_id"] = agent_id
        payload = types[name].model_construct(**fields)
        expected = key.replace("<slot>", str(slot_of(agent_id)))
        assert routing_key_for(payload) == expected, name


def test_the_slot_rule_and_its_vectors_are_the_references() -> None:
    """The pseudo-code's constants and modulus are contracts/shards.py's, and every vector
    the document quotes is in contracts/vectors/slots.json with the same figures."""
    code = re.search(
        r"\n    h = (0x[0-9A-F]+)[^\n]*\n(?:    [^\n]*\n)*?    slot = h mod (\d+)", DOC
    )
    assert code is not None
    assert int(code.group(1), 16) == fnv1a_32(b"")
    assert int(code.group(2)) == SLOTS
    assert f"(h * 0x{0x01000193:08X}) mod 2^32" in DOC  # the FNV prime
    vectors = json.loads((ROOT / "contracts" / "vectors" / "slots.json").read_text())
    by_id = {v["agent_id"]: v for v in vectors["vectors"]}
    quoted = re.findall(
        r"`([^`]+)`\s+gives\s+FNV-1a\s+`(\d+)`,\s+slot\s+`(\d+)`,\s+key\s+`([^`]+)`", DOC
    )
    assert len(quoted) >= 2
    for agent_id, fnv, slot, key in quoted:
        vector = by_id[agent_id]
        assert (int(fnv), int(slot), key) == (
            vector["fnv1a_32"],
            vector["slot"],
            vector["heartbeat_routing_key"],
        )
        assert slot_of(agent_id) == int(slot)


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
