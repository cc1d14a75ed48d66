"""JSON Schema of the records Kafka-native clients produce and consume, generated from the types.

The files under ``schemas/json/`` are checked in; a test fails when they differ from what this
module generates, so any wire change shows up as a diff. ``python -m kafstash.schemas.jsonschema``
checks them (exit 1 on drift, printing the diff); ``--write`` regenerates them.

The files hold the wire schema, not one msgspec release's formatting: descriptions are
``inspect.cleandoc``-ed (msgspec 0.23 cleans docstrings, 0.22 kept their indentation) and
``anyOf`` branches and ``required`` names are sorted (their order differs between releases and
means nothing to a validator), so every msgspec version pyproject.toml allows renders the same.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import sys
from pathlib import Path

import msgspec

from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.schedules import ScheduleSpec

OUT = Path(__file__).parent / "json"
DOCUMENTS: dict[str, type] = {
    "publish-request.v1.schema.json": PublishRequest,
    "delivery-due.v1.schema.json": DeliveryDue,
    "message-event.v1.schema.json": MessageEvent,
    "dlq-entry.v1.schema.json": DlqEntry,
    "schedule-spec.schema.json": ScheduleSpec,
}
WRITE_COMMAND = "python -m kafstash.schemas.jsonschema --write"


def normalise(node: object) -> object:
    """``node`` with generator-specific formatting removed (see the module docstring)."""
    if isinstance(node, list):
        return [normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, object] = {}
    for key, value in node.items():
        if key == "description" and isinstance(value, str):
            out[key] = inspect.cleandoc(value)
        elif key == "anyOf" and isinstance(value, list):
            branches = [normalise(item) for item in value]
            out[key] = sorted(branches, key=lambda b: json.dumps(b, sort_keys=True))
        elif key == "required" and isinstance(value, list):
            out[key] = sorted(value)
        else:
            out[key] = normalise(value)
    return out


def render(kind: type) -> str:
    schema = msgspec.json.schema(kind)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(normalise(schema), indent=2, sort_keys=True) + "\n"


def drift(name: str, kind: type) -> list[str]:
    """A unified diff from the checked-in ``name`` to what ``kind`` renders; empty when current."""
    path = OUT / name
    current = path.read_text() if path.exists() else ""
    return list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            render(kind).splitlines(keepends=True),
            fromfile=f"checked-in {name}",
            tofile=f"generated {name}",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kafstash.schemas.jsonschema",
        description="Check the checked-in JSON Schemas (schemas/json/) against the types; "
        "exit 1 and print the diff when they differ.",
    )
    parser.add_argument(
        "--write", action="store_true", help="regenerate the files instead of checking them"
    )
    args = parser.parse_args(argv)
    if args.write:
        OUT.mkdir(exist_ok=True)
        for name, kind in DOCUMENTS.items():
            (OUT / name).write_text(render(kind))
            print(f"wrote {OUT / name}")
        return 0
    stale = 0
    for name, kind in DOCUMENTS.items():
        if diff := drift(name, kind):
            stale += 1
            sys.stdout.writelines(diff)
    if stale:
        print(f"{stale} schema(s) differ from the types; regenerate with: {WRITE_COMMAND}")
        return 1
    print(f"{len(DOCUMENTS)} schemas are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
