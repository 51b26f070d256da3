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

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson

from pipeline.archive_layout import ROOT, hour_folders
from pipeline.endpoints import Endpoints
from pipeline.outcomes import Outcome
from pipeline.recordfile import Record
from pipeline.runtime.batch import refuse
from pipeline.runtime.processor import Processor
from pipeline.schema.migrations import migrate, require_migrated
from pipeline.sinks.archive import archive_records
from pipeline.sinks.clickhouse import RowsSink
from pipeline.sinks.media import MediaSink
from pipeline.sources.config_feed import read_catalog
from pipeline.sources.stored_state import read_states
from pipeline.stores.clickhouse import ClickHouse, Client
from pipeline.stores.objects import ObjectStore
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
            return [ROOT]
        return hour_folders(self.from_ms, int(time.time() * 1000))


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
    refused: dict[str, str] = field(default_factory=dict)  # entity -> why a store refused it


async def rebuild(
    store: ObjectStore,
    clickhouse: ClickHouse,
    catalog: Catalog,
    selection: Selection,
    max_event_bytes: int,
    progress: Callable[[int], None] = lambda _: None,
) -> RebuildReport:
    """Run the selected archive through a fresh processor into ``clickhouse``, with the worker's own sinks."""
    processor = Processor(catalog, max_event_bytes, state_limit=10**9, dedup_limit=10**9)
    media, rows = MediaSink(store), RowsSink(clickhouse)
    report = RebuildReport()
    batch: list[Record] = []

    async def flush() -> None:
        prepared = processor.prepare(batch, int(time.time() * 1000))
        stored = await clickhouse.run(read_states, clickhouse, prepared.missing)
        out = processor.complete(prepared, stored)
        refused = await media.write(out)
        refuse(out, refused)
        row_refusals = await rows.write(out)
        refuse(out, row_refusals)
        refused |= row_refusals
        processor.mark_durable(out, refused.keys())
        report.records += len(batch)
        report.events += out.counts[Outcome.PROCESSED]
        report.rows += sum(len(table_rows) for table_rows in out.rows.values())
        report.media_objects += len(out.media)
        report.refused.update({":".join(key): reason for key, reason in refused.items()})
        progress(len(batch))
        batch.clear()

    async for record in selected_records(store, selection):
        batch.append(record)
        if len(batch) >= BATCH_RECORDS:
            await flush()
    if batch:
        await flush()
    return report


def prepare_target(client: Client, database: str | None) -> None:
    """Into ``database``: create it if needed and migrate it (the client then writes there). In place: the live
    schema must be current."""
    if database is None:
        require_migrated(client)
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise ValueError(f"{database!r} is not a plain database name")
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.database = database
    migrate(client)


async def rebuild_from_archive(
    endpoints: Endpoints,
    config_topic: str,
    client: Client,
    selection: Selection,
    max_event_bytes: int,
    progress: Callable[[int], None] = lambda _: None,
) -> RebuildReport:
    """``rebuild`` with models and score configs as the workers have them: a rebuild must price and validate
    the same way."""
    catalog = await read_catalog(endpoints.kafka_bootstrap, config_topic)
    store, clickhouse = endpoints.archive(), ClickHouse(client)
    try:
        return await rebuild(store, clickhouse, catalog, selection, max_event_bytes, progress)
    finally:
        await store.close()
        clickhouse.close()
