"""Trace deletion, the I/O part: archive objects rewritten without the trace's messages, media objects deleted
unless another trace references them, then the trace's rows and merge clocks deleted from ClickHouse.

Runs after the batch that carried the ``trace-delete`` event is durable and before its offsets are
committed, so a crash repeats it; every step is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.sinks.archive import ObjectStore, rewrite_object
from pipeline.sinks.clickhouse import ClickHouseSink
from pipeline.transforms.deletion import TraceDeletion, belongs_to_trace

HOUR_MS = 3_600_000


@dataclass
class DeletionReport:
    archive_objects_rewritten: int = 0
    archive_messages_removed: int = 0
    media_objects_deleted: int = 0


async def delete_trace(
    deletion: TraceDeletion, clickhouse: ClickHouseSink, store: ObjectStore, now_ms: int
) -> DeletionReport:
    """Archive and media first, rows last: until the rows are gone a retry finds the same footprint, so a
    crash anywhere repeats the whole deletion."""
    report = DeletionReport()
    project, trace = deletion.project_id, deletion.trace_id
    first_written_ms, members, links = await clickhouse.run(clickhouse.trace_footprint, project, trace)
    if first_written_ms is not None:
        await _rewrite_archive(deletion, members, store, first_written_ms, now_ms, report)
    media_ids = sorted({media_id for media_id, _ in links})
    elsewhere = await clickhouse.run(clickhouse.media_linked_elsewhere, project, trace, media_ids)
    for media_id, path in links:
        if media_id not in elsewhere and path:
            await store.delete(path)
            report.media_objects_deleted += 1
    await clickhouse.run(clickhouse.delete_trace_rows, project, trace, members)
    return report


async def _rewrite_archive(
    deletion: TraceDeletion,
    members: frozenset[str],
    store: ObjectStore,
    first_written_ms: int,
    now_ms: int,
    report: DeletionReport,
) -> None:
    # Archive objects are filed by the hour they were written, which is never before the trace's first row
    # was written (same batch); an hour of margin covers clock differences between workers.
    for hour in range(first_written_ms // HOUR_MS - 1, now_ms // HOUR_MS + 1):
        prefix = time.strftime("raw/%Y/%m/%d/%H/", time.gmtime(hour * 3600))
        async for key in store.list(prefix):
            removed = await rewrite_object(
                store, key, lambda record: not belongs_to_trace(record.value, deletion, members)
            )
            if removed:
                report.archive_objects_rewritten += 1
                report.archive_messages_removed += removed
