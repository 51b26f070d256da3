"""Small builders for unit tests: envelopes as producers send them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from pipeline.recordfile import Record
from pipeline.runtime.processor import Processor
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.fields import EventFields, fields_of
from pipeline.transforms.rows import DATETIME_COLUMNS
from pipeline.transforms.validate import IngestionEvent, parse_event


def envelope(
    kind: str, body: dict[str, Any], ts: str = "2024-01-01T00:00:00.000Z", event_id: str = "e1", project: str = "p1"
) -> dict[str, Any]:
    return {"id": event_id, "timestamp": ts, "type": kind, "project_id": project, "body": body}


def parse(document: dict[str, Any] | bytes) -> Any:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    return parse_event(raw, 5_000_000)


def fields_of_document(document: dict[str, Any]) -> EventFields:
    event = parse(document)
    assert isinstance(event, IngestionEvent), event
    return fields_of(event)


CATALOG = Catalog.with_defaults()
ENTITY_BY_TABLE = {"traces": "trace", "observations": "observation", "scores": "score"}


def merged(
    events: list[dict[str, Any]], order: list[int] | None = None, batches: int = 1, catalog: Catalog | None = None
) -> dict:
    """Final rows after feeding the events (with their arrival offsets) in ``order``, in ``batches``."""
    processor = Processor(catalog or CATALOG, 5_000_000, 10_000, 10_000)
    stored: dict = {}
    records = [Record(value=orjson.dumps(e), offset=i) for i, e in enumerate(events)]
    order = order if order is not None else list(range(len(records)))
    rows: dict = {}
    size = max(1, -(-len(order) // batches))
    for start in range(0, len(order), size):
        chunk = [records[i] for i in order[start : start + size]]
        out = processor.process(chunk, lambda keys: {k: stored[k] for k in keys if k in stored}, 1_700_000_000_000)
        for table, table_rows in out.rows.items():
            for row in table_rows:
                rows[(ENTITY_BY_TABLE[table], row["project_id"], row["id"])] = row
        processor.mark_durable(out)
    return rows


def through_storage(events: list[dict[str, Any]]) -> dict[str, Any]:
    stored: dict = {}
    row: dict[str, Any] = {}
    for offset, event in enumerate(events):
        processor = Processor(CATALOG, 5_000_000, 100, 100)  # a fresh worker: nothing in memory
        out = processor.process(
            [Record(value=orjson.dumps(event), offset=offset)],
            lambda keys: {k: stored[k] for k in keys if k in stored},
            1_700_000_000_000 + offset * 1000,  # a later clock on every pass
        )
        for table_rows in out.rows.values():
            row = table_rows[-1]
        for entity, project, entity_id, clocks in out.clocks:
            stored[(entity, project, entity_id)] = (as_stored(row), clocks)
    return row


def as_stored(row: dict[str, Any]) -> dict[str, Any]:
    """What ClickHouse hands back: datetimes and Decimals instead of milliseconds and floats."""
    return {
        name: datetime.fromtimestamp(value / 1000, tz=UTC)
        if name in DATETIME_COLUMNS and value is not None
        else ({k: Decimal(str(v)) for k, v in value.items()} if name == "provided_cost_details" else value)
        for name, value in row.items()
    }


def run_batch(events: list[Any], catalog: Catalog | None = None, headers: tuple = ()) -> Any:
    """One batch through a fresh processor; events may be dicts or raw bytes."""
    processor = Processor(catalog or CATALOG, 5_000_000, 10_000, 10_000)
    records = [
        Record(value=e if isinstance(e, bytes) else orjson.dumps(e), offset=i, headers=headers)
        for i, e in enumerate(events)
    ]
    return processor.process(records, lambda keys: {}, 1_700_000_000_000)
