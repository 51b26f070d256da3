"""The raw-copy baseline: read the ingestion topic and insert each parsed event as it is.

No validation beyond JSON, no dedup, merge, enrichment or archive: the limit of this Kafka + ClickHouse stack
on this machine, which the benchmark compares the pipeline with. Offsets are committed after each insert,
like the worker does, so both pay for durability.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson

from pipeline.sources.kafka import make_consumer
from pipeline.stores.clickhouse import connect

RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS raw_events (project_id String, id String, type LowCardinality(String), "
    "timestamp DateTime64(3), body String CODEC(ZSTD(3))) ENGINE = MergeTree ORDER BY (project_id, id)"
)


async def raw_copy(
    bootstrap: str, topic: str, group: str, clickhouse_url: str, idle_seconds: float = 2.0, batch: int = 5000
) -> dict[str, float]:
    client = connect(clickhouse_url, "baseline")
    client.command(RAW_TABLE)
    # The worker's own consumer settings: the two differ only in what they do with the messages.
    consumer = make_consumer(bootstrap, group, batch, session_timeout_seconds=10.0)
    consumer.subscribe([topic])
    await consumer.start()
    copied = 0
    first = last = None
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_seconds or first is None:
            messages = [
                m for items in (await consumer.getmany(timeout_ms=200, max_records=batch)).values() for m in items
            ]
            if not messages:
                if first is None and time.monotonic() - idle_since > 60:
                    break
                continue
            first = first or time.monotonic()
            rows = []
            for message in messages:
                try:
                    event = orjson.loads(message.value)
                    rows.append(
                        [
                            str(event.get("project_id")),
                            str(event.get("id")),
                            str(event.get("type")),
                            datetime.fromtimestamp(message.timestamp / 1000, tz=UTC),
                            orjson.dumps(event.get("body")).decode(),
                        ]
                    )
                except (orjson.JSONDecodeError, AttributeError):
                    continue
            await asyncio.to_thread(
                client.insert, "raw_events", rows, column_names=["project_id", "id", "type", "timestamp", "body"]
            )
            await consumer.commit()
            copied += len(messages)
            last = idle_since = time.monotonic()
    finally:
        await consumer.stop()
    elapsed = (last or 0) - (first or 0)
    return {
        "events": copied,
        "seconds": round(elapsed, 3),
        "events_per_second": round(copied / elapsed, 1) if elapsed > 0 else 0.0,
    }
