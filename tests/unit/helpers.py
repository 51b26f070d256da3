"""Small builders for unit tests: envelopes as producers send them."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.transforms.records import EventRecord, to_record
from pipeline.transforms.validate import IngestionEvent, parse_event


def envelope(
    kind: str, body: dict[str, Any], ts: str = "2024-01-01T00:00:00.000Z", event_id: str = "e1", project: str = "p1"
) -> dict[str, Any]:
    return {"id": event_id, "timestamp": ts, "type": kind, "project_id": project, "body": body}


def parse(document: dict[str, Any] | bytes, sequence: int = 0) -> Any:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    return parse_event(raw, 5_000_000, sequence)


def record(document: dict[str, Any], sequence: int = 0) -> EventRecord:
    event = parse(document, sequence)
    assert isinstance(event, IngestionEvent), event
    return to_record(event)
