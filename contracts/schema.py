"""JSON Schema of every message, so an agent in any language can speak the protocol.

Every schema is plain draft 2020-12 with no keyword a strict validator (Ajv strict,
Python ``jsonschema``) does not know: what rallypoint says *about* a message (its kind,
the worker it is routed to, its routing key) is in a separate annotations document
(:func:`message_annotations`), not in the schema. Validate a message against its own type's
schema (``<Type>.schema.json``): one bad field gives one error. The protocol schema
picks the message's schema by ``type`` with ``if``/``then``, so it too reports the
errors of that one message, not of every other.
"""

from __future__ import annotations

from typing import Any

from contracts.base import Message
from contracts.envelope import envelope_class
from contracts.registry import all_types

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://rallypoint.dev/schema/"

# Keywords of a type that Ajv's strictTypes wants the ``type`` of, when a schema has none.
_TYPED_KEYWORDS: dict[str, str] = {
    "maxLength": "string",
    "minLength": "string",
    "pattern": "string",
    "format": "string",
    "maxItems": "array",
    "minItems": "array",
    "items": "array",
    "prefixItems": "array",
    "uniqueItems": "array",
    "maxProperties": "object",
    "minProperties": "object",
    "properties": "object",
    "additionalProperties": "object",
    "propertyNames": "object",
    "required": "object",
}


def schema_id(type_name: str) -> str:
    return f"{BASE_URI}{type_name}.schema.json"


def message_schema(cls: type[Message]) -> dict[str, Any]:
    """The schema of one message in its envelope, with ``type`` and ``version`` pinned."""
    schema = envelope_class(cls).model_json_schema(mode="validation")
    props = schema["properties"]
    props["type"] = {"const": cls.type_name(), "title": "Type", "type": "string"}
    props["version"] = {"const": cls.version, "title": "Version", "type": "integer"}
    schema["title"] = cls.type_name()
    schema["description"] = (cls.__doc__ or f"{cls.type_name()} message").strip()
    _strict(schema)
    return {"$schema": SCHEMA_DIALECT, "$id": schema_id(cls.type_name()), **schema}


def _strict(node: Any) -> None:
    """Say the type wherever a keyword needs one, and close fixed-length tuples (Ajv strict)."""
    if isinstance(node, list):
        for item in node:
            _strict(item)
        return
    if not isinstance(node, dict):
        return
    if "type" not in node and "$ref" not in node and not _has_union(node):
        wanted = {_TYPED_KEYWORDS[k] for k in node if k in _TYPED_KEYWORDS}
        if len(wanted) == 1:
            node["type"] = wanted.pop()
    if "prefixItems" in node and "items" not in node:
        node["items"] = False
        node.setdefault("minItems", len(node["prefixItems"]))
    for key, value in node.items():
        if key not in ("const", "default", "examples", "enum"):
            _strict(value)


def _has_union(node: dict[str, Any]) -> bool:
    return any(k in node for k in ("anyOf", "oneOf", "allOf", "enum", "const"))


def all_schemas() -> dict[str, dict[str, Any]]:
    return {name: message_schema(cls) for name, cls in all_types().items()}


def envelope_schema() -> dict[str, Any]:
    """The envelope alone, any payload: what every message has in common."""
    schema = message_schema(next(iter(all_types().values())))
    schema.pop("$defs", None)
    props = schema["properties"]
    props["type"] = {"type": "string", "minLength": 1, "title": "Type"}
    props["version"] = {"type": "integer", "minimum": 1, "title": "Version"}
    props["payload"] = {"type": "object", "title": "Payload"}
    schema["$id"] = f"{BASE_URI}envelope.schema.json"
    schema["title"] = "Envelope"
    schema["description"] = "The envelope every message travels in; its payload per type."
    return schema


def message_annotations() -> dict[str, dict[str, Any]]:
    """What rallypoint says about each message beyond its shape: kind, route, routing key."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in all_types().items():
        entry: dict[str, Any] = {"kind": cls.kind, "version": cls.version}
        if cls.route:
            entry["route"] = cls.route
            entry["routing_key"] = f"{cls.route}.{name}"
        out[name] = entry
    return out


def protocol_schema() -> dict[str, Any]:
    """One document for any message: the schema of the message its ``type`` names."""
    schemas = all_schemas()
    defs: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for name, schema in schemas.items():
        # nested refs point at "#/$defs/X": hoist them to the document root
        defs.update(schema.pop("$defs", {}))
        schema.pop("$schema", None)
        schema.pop("$id", None)
        defs[f"{name}Message"] = schema  # the payload model itself is defs[name]
        branches.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {"$ref": f"#/$defs/{name}Message"},
            }
        )
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{BASE_URI}protocol.schema.json",
        "title": "rallypoint message",
        "type": "object",
        "properties": {"type": {"type": "string", "enum": sorted(schemas)}},
        "required": ["type"],
        "allOf": branches,
        "$defs": defs,
    }
