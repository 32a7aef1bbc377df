"""JSON Schema of every message, so an agent in any language can speak the protocol."""

from __future__ import annotations

from typing import Any

from contracts.base import Message
from contracts.envelope import envelope_class
from contracts.registry import all_types

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def message_schema(cls: type[Message]) -> dict[str, Any]:
    """The schema of one message in its envelope, with ``type`` and ``version`` pinned."""
    schema = envelope_class(cls).model_json_schema(mode="validation")
    props = schema["properties"]
    props["type"] = {"const": cls.type_name(), "title": "Type", "type": "string"}
    props["version"] = {"const": cls.version, "title": "Version", "type": "integer"}
    schema["title"] = cls.type_name()
    schema["description"] = (cls.__doc__ or f"{cls.type_name()} message").strip()
    schema["$schema"] = SCHEMA_DIALECT
    schema["x-rally-kind"] = cls.kind
    if cls.route:
        schema["x-rally-route"] = cls.route
    return schema


def all_schemas() -> dict[str, dict[str, Any]]:
    return {name: message_schema(cls) for name, cls in all_types().items()}


def protocol_schema() -> dict[str, Any]:
    """One document: any message, discriminated by ``type``."""
    schemas = all_schemas()
    defs: dict[str, Any] = {}
    for name, schema in schemas.items():
        # nested refs point at "#/$defs/X": hoist them to the document root
        defs.update(schema.pop("$defs", {}))
        schema.pop("$schema", None)
        defs[f"{name}Message"] = schema  # the payload model itself is defs[name]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "rallypoint message",
        "oneOf": [{"$ref": f"#/$defs/{name}Message"} for name in schemas],
        "discriminator": {
            "propertyName": "type",
            "mapping": {name: f"#/$defs/{name}Message" for name in schemas},
        },
        "$defs": defs,
    }
