"""`rally schema`: the JSON Schema of every message, printed or written one file each."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from contracts.schema import all_schemas, protocol_schema


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "schema", help="print the JSON Schema of every message (or write one file each)"
    )
    parser.add_argument("--out", metavar="DIR", help="write <Type>.schema.json files into DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        schemas = all_schemas()
        for name, schema in schemas.items():
            (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        (out / "protocol.schema.json").write_text(json.dumps(protocol_schema(), indent=2) + "\n")
        print(f"wrote {len(schemas)} message schemas and protocol.schema.json to {out}")
        return 0
    print(json.dumps(protocol_schema(), indent=2))
    return 0
