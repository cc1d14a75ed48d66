"""JSON Schema of the records Kafka-native clients produce and consume, generated from the types.

The files under ``schemas/json/`` are checked in; a test fails when they differ from what this
module generates, so any wire change shows up as a diff. Regenerate with
``python -m kafstash.schemas.jsonschema``.
"""

from __future__ import annotations

import json
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


def render(kind: type) -> str:
    schema = msgspec.json.schema(kind)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, kind in DOCUMENTS.items():
        (OUT / name).write_text(render(kind))


if __name__ == "__main__":
    main()
