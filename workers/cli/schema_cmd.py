"""`rally schema`: the JSON Schema of every message, printed or written one file each."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from contracts.schema import all_schemas, envelope_schema, message_annotations, protocol_schema


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "schema", help="print the JSON Schema of every message (or write one file each)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write <Type>.schema.json per message, envelope.schema.json, "
        "protocol.schema.json and annotations.json (kind and routing key) into DIR",
    )
    parser.set_defaults(func=run)


def _write(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        schemas = all_schemas()
        for name, schema in schemas.items():
            _write(out / f"{name}.schema.json", schema)
        _write(out / "envelope.schema.json", envelope_schema())
        _write(out / "protocol.schema.json", protocol_schema())
        _write(out / "annotations.json", message_annotations())
        print(
            f"wrote {len(schemas)} message schemas, envelope.schema.json, "
            f"protocol.schema.json and annotations.json to {out}"
        )
        return 0
    print(json.dumps(protocol_schema(), indent=2))
    return 0
