"""Rows and merge clocks into ClickHouse, on the ClickHouse thread.

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
DAYS_IN_MONTHS = 28 * MAX_PARTITIONS_PER_INSERT
CLOCK_COLUMNS = ["project_id", "entity", "id", "clocks", "event_ts"]
Group = tuple[EntityKey, list[dict[str, Any]]]


class RowsSink:
    name = "clickhouse"

    def __init__(self, clickhouse: ClickHouse) -> None:
        self.clickhouse = clickhouse

    async def write(self, out: BatchOutput) -> Refused:
        if not out.rows and not out.clocks:
            return {}
        started = time.perf_counter()
        refused, written_bytes = await self.clickhouse.run(self.insert, out)
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        metrics.INSERT_BYTES.inc(written_bytes)
        for table in out.rows:
            kept = sum(1 for owner in out.row_owners[table] if owner not in refused)
            metrics.ROWS_WRITTEN.labels(table).inc(kept)
        if refused:
            metrics.STORE_REFUSALS.labels(self.name).inc(len(refused))
        return refused

    def insert(self, out: BatchOutput) -> tuple[Refused, int]:
        """Every table's rows, then the clocks of the entities that were not refused (ClickHouse thread)."""
        refused: Refused = {}
        written = 0
        for table in sorted(out.rows, key=lambda name: TABLE_ORDER.index(name)):
            groups: dict[EntityKey, list[dict[str, Any]]] = {}
            for row, owner in zip(out.rows[table], out.row_owners[table], strict=True):
                if owner not in refused:
                    groups.setdefault(owner, []).append(row)
            for chunk in by_partitions(table, list(groups.items())):
                counter = [0]

                def write(part: Sequence[Group], table: str = table, counter: list[int] = counter) -> None:
                    counter[0] += self.insert_rows(table, [row for _, rows in part for row in rows])

                for (owner, _), reason in narrow(chunk, write, is_data_error):
                    refused[owner] = f"ClickHouse refused the {table} row: {reason}"
                written += counter[0]
        clocks = [clock for clock in out.clocks if (clock[0], clock[1], clock[2]) not in refused]
        written += self.insert_clocks(clocks, out.now_ms)
        return refused, written

    def insert_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Insert row dicts; returns the bytes ClickHouse reports written."""
        if not rows:
            return 0
        types = self.clickhouse.columns(table)
        names, columns = insert_columns(list(types), rows)
        return self.clickhouse.client.insert(
            table, columns, column_names=names, column_type_names=[types[name] for name in names], column_oriented=True
        ).written_bytes()

    def insert_clocks(self, clocks: Iterable[tuple[str, str, str, dict[str, Any]]], now_ms: int) -> int:
        rows = clock_rows(clocks, now_ms)
        if not rows:
            return 0
        types = self.clickhouse.columns("merge_clocks")
        return self.clickhouse.client.insert(
            "merge_clocks", rows, column_names=CLOCK_COLUMNS, column_type_names=[types[name] for name in CLOCK_COLUMNS]
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
