"""Rows and merge clocks into ClickHouse: traces, observations and scores side by side (a session and thread
each), then media links and clocks on the main session's thread.

Rows before clocks: after a crash between the two, stored clocks are never newer than the stored row, so
re-applying the redelivered events restores both (the reverse order would let a newer clock shadow a value
the row never got).

Two kinds of refusal are handled here rather than retried forever:
- an insert that touches more than ``MAX_PARTITIONS_PER_INSERT`` months (ClickHouse's
  ``max_partitions_per_insert_block``, a backfill over years) is split by month before it is sent;
- a value the column cannot hold refuses the whole insert: the rows are halved until the refused entities
  are found; the rest is written and the refused entities are returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from pipeline import metrics
from pipeline.runtime.batch import BatchOutput, EntityKey
from pipeline.sinks.base import Refused, narrow
from pipeline.stores.clickhouse import ClickHouse, is_data_error

MAX_PARTITIONS_PER_INSERT = 100
# Tables partitioned by month, and the column that decides the month.
PARTITION_COLUMN = {"traces": "timestamp", "observations": "start_time", "scores": "timestamp"}
# Entity tables first: a refused observation must not leave its media links behind.
TABLE_ORDER = ("traces", "observations", "scores", "media")
ENTITY_TABLES = TABLE_ORDER[:3]
DAYS_IN_MONTHS = 28 * MAX_PARTITIONS_PER_INSERT
CLOCK_COLUMNS = ["project_id", "entity", "id", "clocks", "event_ts"]
Group = tuple[EntityKey, list[dict[str, Any]]]


class RowsSink:
    name = "clickhouse"

    def __init__(self, clickhouse: ClickHouse, lanes: Sequence[ClickHouse] = ()) -> None:
        self.clickhouse = clickhouse
        # Entity tables are independent of each other: they go in side by side, one session and thread each
        # (chDB runs sessions concurrently and works without the GIL); media links and clocks follow.
        self.lanes = [clickhouse, *lanes]

    async def write(self, out: BatchOutput) -> Refused:
        if not out.rows and not out.clocks:
            return {}
        started = time.perf_counter()
        refused, written_bytes = await self.insert(out)
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        metrics.INSERT_BYTES.inc(written_bytes)
        for table in out.rows:
            kept = sum(1 for owner in out.row_owners[table] if owner not in refused)
            metrics.ROWS_WRITTEN.labels(table).inc(kept)
        if refused:
            metrics.STORE_REFUSALS.labels(self.name).inc(len(refused))
        return refused

    async def insert(self, out: BatchOutput) -> tuple[Refused, int]:
        """The entity tables' rows, then media links and clocks of the entities that were not refused."""
        tables = [table for table in ENTITY_TABLES if table in out.rows]
        lanes = [self.lanes[number % len(self.lanes)] for number in range(len(tables))]
        parts = await asyncio.gather(
            *(lane.run(self.insert_table, lane, table, out, {}) for lane, table in zip(lanes, tables, strict=True))
        )
        refused: Refused = {}
        for table_refused, _ in parts:
            refused |= table_refused
        written = sum(table_written for _, table_written in parts)
        return await self.clickhouse.run(self.insert_after_entities, out, refused, written)

    def insert_after_entities(self, out: BatchOutput, refused: Refused, written: int) -> tuple[Refused, int]:
        """Media links, then clocks (main session's thread): a refused entity leaves neither behind."""
        for table in sorted(set(out.rows) - set(ENTITY_TABLES), key=TABLE_ORDER.index):
            table_refused, table_written = self.insert_table(self.clickhouse, table, out, refused)
            refused |= table_refused
            written += table_written
        clocks = [clock for clock in out.clocks if (clock[0], clock[1], clock[2]) not in refused]
        return refused, written + self.insert_clocks(clocks, out.now_ms)

    def insert_table(self, lane: ClickHouse, table: str, out: BatchOutput, refused: Refused) -> tuple[Refused, int]:
        """One table's rows, leaving out those of ``refused`` entities; returns the entities it refuses (found by
        halving the insert) and the bytes written."""
        groups: dict[EntityKey, list[dict[str, Any]]] = {}
        for row, owner in zip(out.rows[table], out.row_owners[table], strict=True):
            if owner not in refused:
                groups.setdefault(owner, []).append(row)
        newly: Refused = {}
        written = 0
        for chunk in by_partitions(table, list(groups.items())):

            def write(part: Sequence[Group]) -> None:
                nonlocal written
                written += insert_rows(lane, table, [row for _, rows in part for row in rows])

            for (owner, _), reason in narrow(chunk, write, is_data_error):
                newly[owner] = f"ClickHouse refused the {table} row: {reason}"
        return newly, written

    def insert_clocks(self, clocks: Iterable[tuple[str, str, str, dict[str, Any]]], now_ms: int) -> int:
        rows = clock_rows(clocks, now_ms)
        if not rows:
            return 0
        types = self.clickhouse.columns("merge_clocks")
        return self.clickhouse.client.insert(
            "merge_clocks", rows, column_names=CLOCK_COLUMNS, column_type_names=[types[name] for name in CLOCK_COLUMNS]
        ).written_bytes()


def insert_rows(lane: ClickHouse, table: str, rows: Sequence[dict[str, Any]]) -> int:
    """Insert row dicts through ``lane`` (on its thread); returns the bytes ClickHouse reports written."""
    if not rows:
        return 0
    types = lane.columns(table)
    names, columns = insert_columns(list(types), rows)
    return lane.client.insert(
        table, columns, column_names=names, column_type_names=[types[name] for name in names], column_oriented=True
    ).written_bytes()


def clock_rows(clocks: Iterable[tuple[str, str, str, dict[str, Any]]], now_ms: int) -> list[list[Any]]:
    """``merge_clocks`` rows: project, entity, id, the clocks as JSON, and when they were written."""
    return [
        [project, entity, entity_id, orjson.dumps(clock).decode(), now_ms]
        for entity, project, entity_id, clock in clocks
    ]


def insert_columns(table_columns: list[str], rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The insert's column names (the table's, in order, that the rows have) and one list of values per column.
    Timestamps stay epoch milliseconds: a DateTime64(3) column takes them as they are."""
    names = [name for name in table_columns if name in rows[0]]
    return names, [[row[name] for row in rows] for name in names]


def month_of(ms: int) -> int:
    moment = time.gmtime(ms // 1000)
    return moment.tm_year * 12 + moment.tm_mon


def by_partitions(table: str, groups: list[Group]) -> list[list[Group]]:
    """The groups in chunks that each touch at most ``MAX_PARTITIONS_PER_INSERT`` months (one chunk unless
    the rows span years)."""
    column = PARTITION_COLUMN.get(table)
    if column is None or not groups:
        return [groups] if groups else []
    stamps = [row[column] for _, rows in groups for row in rows]
    if max(stamps) - min(stamps) < DAYS_IN_MONTHS * 86_400_000:
        return [groups]
    chunks: list[list[Group]] = []
    months: set[int] = set()
    for group in sorted(groups, key=lambda group: min(row[column] for row in group[1])):
        group_months = {month_of(row[column]) for row in group[1]}
        if not chunks or len(months | group_months) > MAX_PARTITIONS_PER_INSERT:
            chunks.append([])
            months = set()
        chunks[-1].append(group)
        months |= group_months
    return chunks
