"""The JSON Schemas compile in strict draft 2020-12 validators and say what is wrong briefly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import contracts as c
from contracts.schema import all_schemas, message_annotations, protocol_schema
from workers.cli.main import main as rally

# Every keyword of the draft 2020-12 vocabularies (core, applicator, unevaluated,
# validation, format-annotation, content, meta-data): a strict validator knows no other.
KNOWN = frozenset(
    (
        "$schema",
        "$id",
        "$ref",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$vocabulary",
        "$comment",
        "$defs",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "prefixItems",
        "items",
        "contains",
        "properties",
        "patternProperties",
        "additionalProperties",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "type",
        "enum",
        "const",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "dependentRequired",
        "format",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "title",
        "description",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "examples",
        "",
    )
)
# keywords whose value is a map of names to schemas (the names are not keywords)
SCHEMA_MAPS = frozenset({"$defs", "properties", "patternProperties", "dependentSchemas"})


def unknown_keywords(node: Any, where: str = "#") -> list[str]:
    found: list[str] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            found += unknown_keywords(item, f"{where}/{i}")
        return found
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        if key not in KNOWN:
            found.append(f"{where}/{key}")
        elif key in SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                found += unknown_keywords(sub, f"{where}/{key}/{name}")
        elif key not in ("const", "default", "examples", "enum", "required"):
            found += unknown_keywords(value, f"{where}/{key}")
    return found


def every_schema() -> dict[str, dict[str, Any]]:
    return {**all_schemas(), "protocol": protocol_schema()}


def test_every_schema_uses_only_draft_2020_12_keywords() -> None:
    for name, schema in every_schema().items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert unknown_keywords(schema) == [], name


def test_fixed_tuples_are_closed_and_typed_keywords_name_their_type() -> None:
    """What Ajv's strictTuples and strictTypes ask for, checked without Node."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "prefixItems" in node:
                assert node.get("items") is False
                assert "minItems" in node
            if "maxLength" in node or "pattern" in node:
                assert "type" in node or "$ref" in node or "anyOf" in node, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for schema in every_schema().values():
        walk(schema)


def _register() -> dict[str, Any]:
    env = c.Envelope.wrap(
        c.RegisterAgent(agent_id="a1", capabilities=("x",), capacity=1), sender="a1"
    )
    data: dict[str, Any] = json.loads(c.encode(env))
    return data


@pytest.mark.parametrize("against", ["RegisterAgent", "protocol"])
def test_one_bad_field_gives_a_handful_of_errors(against: str) -> None:
    schema = every_schema()[against]
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    good = _register()
    assert list(validator.iter_errors(good)) == []
    bad = _register()
    bad["payload"]["capacity"] = "many"
    errors = [e for e in validator.iter_errors(bad)]
    leaves = [leaf for e in errors for leaf in (e.context or [e])]
    assert 1 <= len(leaves) <= 3
    assert any(list(leaf.absolute_path)[-2:] == ["payload", "capacity"] for leaf in leaves)


def test_envelope_id_and_sent_at_are_required_in_every_schema() -> None:
    for name, schema in all_schemas().items():
        assert {"id", "sent_at", "type", "version", "payload"} <= set(schema["required"]), name


def test_annotations_say_kind_and_routing_key_outside_the_schema() -> None:
    notes = message_annotations()
    assert notes["RegisterAgent"] == {
        "kind": "command",
        "version": 1,
        "route": "registry",
        "routing_key": "registry.RegisterAgent",
    }
    assert notes["AssignTask"]["kind"] == "notice"
    assert "route" not in notes["AssignTask"]


def test_rally_schema_out_writes_one_schema_per_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        rally(["schema", "--out", str(tmp_path)])
    assert done.value.code == 0
    names = {p.name for p in tmp_path.iterdir()}
    for name in all_schemas():
        assert f"{name}.schema.json" in names
    assert {"protocol.schema.json", "envelope.schema.json", "annotations.json"} <= names
    one = json.loads((tmp_path / "RegisterAgent.schema.json").read_text())
    assert "$defs" in one
    assert one["properties"]["type"]["const"] == "RegisterAgent"
