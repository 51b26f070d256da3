"""Trace deletion, the I/O part: archive objects rewritten without the trace's messages, media objects deleted
unless another trace references them, then the trace's rows and merge clocks deleted from ClickHouse.

Runs after the batch that carried the ``trace-delete`` event is durable and before its offsets are
committed, so a crash repeats it; every step is idempotent. Archive and media first, rows last: until the
rows are gone a retry finds the same footprint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC

from clickhouse_connect.driver.client import Client

from pipeline import metrics
from pipeline.archive_layout import HOUR_MS, hour_folders
from pipeline.runtime.batch import BatchOutput
from pipeline.sinks.archive import rewrite_object
from pipeline.sinks.base import Refused
from pipeline.stores.clickhouse import ClickHouse
from pipeline.stores.objects import ObjectStore
from pipeline.transforms.deletion import TraceDeletion, belongs_to_trace

# Where a trace's rows are, and the column that names the trace.
TRACE_ROWS = (("traces", "id"), ("observations", "trace_id"), ("scores", "trace_id"), ("media", "trace_id"))
log = logging.getLogger("lfpipe.deletion")


@dataclass
class DeletionReport:
    archive_objects_rewritten: int = 0
    archive_messages_removed: int = 0
    media_objects_deleted: int = 0


class DeletionSink:
    name = "deletion"

    def __init__(self, clickhouse: ClickHouse, store: ObjectStore) -> None:
        self.clickhouse = clickhouse
        self.store = store

    async def write(self, out: BatchOutput) -> Refused:
        for deletion in out.deletions:
            report = await self.delete_trace(deletion, int(time.time() * 1000))
            metrics.TRACES_DELETED.inc()
            log.info("deleted trace %s of project %s: %s", deletion.trace_id, deletion.project_id, report)
        return {}

    async def delete_trace(self, deletion: TraceDeletion, now_ms: int) -> DeletionReport:
        report = DeletionReport()
        project, trace = deletion.project_id, deletion.trace_id
        client = self.clickhouse.client
        first_written_ms, members, links = await self.clickhouse.run(trace_footprint, client, project, trace)
        if first_written_ms is not None:
            await self._rewrite_archive(deletion, members, first_written_ms, now_ms, report)
        media_ids = sorted({media_id for media_id, _ in links})
        elsewhere = await self.clickhouse.run(media_linked_elsewhere, client, project, trace, media_ids)
        for media_id, path in links:
            if media_id not in elsewhere and path:
                await self.store.delete(path)
                report.media_objects_deleted += 1
        await self.clickhouse.run(delete_trace_rows, client, project, trace, members)
        return report

    async def _rewrite_archive(
        self,
        deletion: TraceDeletion,
        members: frozenset[str],
        first_written_ms: int,
        now_ms: int,
        report: DeletionReport,
    ) -> None:
        # Archive objects are filed by the hour their batch was processed, which is never before the trace's
        # first row was written (same batch); an hour of margin covers clock differences between workers.
        for prefix in hour_folders(first_written_ms - HOUR_MS, now_ms):
            async for key in self.store.list(prefix):
                removed = await rewrite_object(
                    self.store, key, lambda record: not belongs_to_trace(record.value, deletion, members)
                )
                if removed:
                    report.archive_objects_rewritten += 1
                    report.archive_messages_removed += removed


def trace_footprint(client: Client, project_id: str, trace_id: str) -> tuple[int | None, frozenset[str], list]:
    """When the trace's rows were first written (epoch ms; None without rows), the ids of its observations and
    scores, and its media links (media id, bucket path). Every stored version counts, not only the latest, so
    the answer is the same when a deletion is retried."""
    parameters = {"project": project_id, "trace": trace_id}
    firsts = []
    for table, column in TRACE_ROWS[:3]:
        first = client.query(
            f"SELECT minOrNull(created_at) FROM {table} "
            f"WHERE project_id = {{project:String}} AND {column} = {{trace:String}}",
            parameters=parameters,
        ).result_rows[0][0]
        if first is not None:
            firsts.append(int((first if first.tzinfo else first.replace(tzinfo=UTC)).timestamp() * 1000))
    members = client.query(
        "SELECT DISTINCT id FROM observations WHERE project_id = {project:String} AND trace_id = {trace:String} "
        "UNION DISTINCT SELECT DISTINCT id FROM scores "
        "WHERE project_id = {project:String} AND trace_id = {trace:String}",
        parameters=parameters,
    ).result_rows
    links = client.query(
        "SELECT DISTINCT media_id, bucket_path FROM media "
        "WHERE project_id = {project:String} AND trace_id = {trace:String}",
        parameters=parameters,
    ).result_rows
    return (min(firsts) if firsts else None, frozenset(row[0] for row in members), [tuple(row) for row in links])


def delete_trace_rows(client: Client, project_id: str, trace_id: str, members: frozenset[str]) -> None:
    """Every stored version of the trace's rows and merge clocks, gone (lightweight deletes: the data does not
    stay behind in a tombstone)."""
    parameters = {"project": project_id, "trace": trace_id, "members": sorted(members)}
    for table, column in TRACE_ROWS:
        client.command(
            f"DELETE FROM {table} WHERE project_id = {{project:String}} AND {column} = {{trace:String}}",
            parameters=parameters,
        )
    client.command(
        "DELETE FROM merge_clocks WHERE project_id = {project:String} AND ((entity = 'trace' AND id = "
        "{trace:String}) OR (entity IN ('observation', 'score') AND id IN {members:Array(String)}))",
        parameters=parameters,
    )


def media_linked_elsewhere(client: Client, project_id: str, trace_id: str, media_ids: list[str]) -> set[str]:
    """Which of ``media_ids`` a live row of another trace of the project still references."""
    if not media_ids:
        return set()
    rows = client.query(
        "SELECT DISTINCT media_id FROM media FINAL WHERE project_id = {project:String} "
        "AND media_id IN {ids:Array(String)} AND trace_id != {trace:String}",
        parameters={"project": project_id, "ids": media_ids, "trace": trace_id},
    ).result_rows
    return {row[0] for row in rows}
