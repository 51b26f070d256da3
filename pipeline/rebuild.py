"""Re-derive the ClickHouse tables from the raw archive, the source of truth.

The archive keeps every valid message a worker made durable (repeats included; they are dropped by topic,
partition and offset). Running those messages through the same processor gives the same rows, because the
merge does not depend on order or batching. The target is either a fresh database, migrated first, or the
live tables: there the stored merge clocks are read like a worker reads them, so a rebuild in place rewrites
the same rows and is idempotent. Media objects are written again from the inline payloads (same keys).

A time range selects messages by their Kafka timestamp. An entity whose events straddle the range is rebuilt
from the part inside it, so rebuild whole ranges of activity.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson

from pipeline.processor import BatchOutput, Processor, media_key
from pipeline.recordfile import Record
from pipeline.sinks.archive import ObjectStore, archive_records
from pipeline.sinks.clickhouse import ClickHouseSink
from pipeline.transforms.catalog import Catalog

BATCH_RECORDS = 5000


@dataclass(frozen=True)
class Selection:
    project_id: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None  # exclusive

    def accepts(self, record: Record) -> bool:
        if self.from_ms is not None and record.timestamp_ms < self.from_ms:
            return False
        if self.to_ms is not None and record.timestamp_ms >= self.to_ms:
            return False
        if self.project_id is None:
            return True
        if self.project_id.encode() not in record.value:  # cheap: most messages are of other projects
            return False
        try:
            return orjson.loads(record.value).get("project_id") == self.project_id
        except (orjson.JSONDecodeError, AttributeError):
            return False

    def hour_prefixes(self) -> list[str]:
        """Archive folders that can hold the range: objects are filed by the hour they were written, which is at
        or after the messages' timestamps and may be much later (lag, outages), so up to now."""
        if self.from_ms is None:
            return ["raw/"]
        hours = range(self.from_ms // 3_600_000, int(time.time() * 1000) // 3_600_000 + 1)
        return [time.strftime("raw/%Y/%m/%d/%H/", time.gmtime(hour * 3600)) for hour in hours]


async def selected_records(store: ObjectStore, selection: Selection) -> AsyncIterator[Record]:
    for prefix in selection.hour_prefixes():
        async for record in archive_records(store, prefix):
            if selection.accepts(record):
                yield record


@dataclass
class RebuildReport:
    records: int = 0
    events: int = 0
    rows: int = 0
    media_objects: int = 0


async def rebuild(
    store: ObjectStore,
    clickhouse: ClickHouseSink,
    catalog: Catalog,
    selection: Selection,
    max_event_bytes: int,
    progress: Callable[[int], None] = lambda _: None,
) -> RebuildReport:
    """Run the selected archive through a fresh processor into ``clickhouse``."""
    processor = Processor(catalog, max_event_bytes, state_limit=10**9, dedup_limit=10**9)
    report = RebuildReport()
    batch: list[Record] = []

    async def flush() -> None:
        now_ms = int(time.time() * 1000)
        out = await clickhouse.run(processor.process, batch, clickhouse.read_states, now_ms)
        await _write(out, store, clickhouse, now_ms, report)
        processor.mark_durable(out)
        report.records += len(batch)
        report.events += out.counts["processed"]
        progress(len(batch))
        batch.clear()

    async for record in selected_records(store, selection):
        batch.append(record)
        if len(batch) >= BATCH_RECORDS:
            await flush()
    if batch:
        await flush()
    return report


async def _write(
    out: BatchOutput, store: ObjectStore, clickhouse: ClickHouseSink, now_ms: int, report: RebuildReport
) -> None:
    for (project_id, _), media in out.media.items():
        await store.put(media_key(project_id, media), media.content)
        report.media_objects += 1

    def insert() -> None:
        for table, rows in out.rows.items():
            clickhouse.insert_rows(table, rows)
        clickhouse.insert_clocks(out.clocks, now_ms)

    await clickhouse.run(insert)
    report.rows += sum(len(rows) for rows in out.rows.values())
