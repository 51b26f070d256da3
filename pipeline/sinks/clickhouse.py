"""ClickHouse through clickhouse-connect: embedded chDB (``chdb:///path``) or a server URL, same code.

chDB allows one process per data folder, so the process that opens it takes an exclusive lock and records
who it is; other commands (``lfpipe query``) then ask that process over HTTP instead of failing.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client

from pipeline import metrics
from pipeline.transforms.rows import DATETIME_COLUMNS, RECORD_FIELDS, TABLE_BY_ENTITY

LOCK_NAME = ".lfpipe-owner.json"
# Where a trace's rows are, and the column that names the trace.
TRACE_ROWS = (("traces", "id"), ("observations", "trace_id"), ("scores", "trace_id"), ("media", "trace_id"))
log = logging.getLogger("lfpipe.clickhouse")


class ChdbBusy(RuntimeError):
    """Another live process holds the chDB data folder."""

    def __init__(self, owner: dict[str, Any]) -> None:
        super().__init__(f"the chDB folder is held by process {owner.get('pid')} ({owner.get('role', '?')})")
        self.owner = owner


def _chdb_folder(url: str) -> Path | None:
    return Path(url.removeprefix("chdb://")) if url.startswith("chdb://") else None


def read_owner(url: str) -> dict[str, Any] | None:
    folder = _chdb_folder(url)
    if folder is None or not (folder / LOCK_NAME).exists():
        return None
    try:
        return orjson.loads((folder / LOCK_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def connect(url: str, role: str, web_port: int | None = None, wait_seconds: float = 0) -> Client:
    """Open ClickHouse. For chDB, lock the folder first, waiting up to ``wait_seconds`` for a short-lived
    holder (a ``query``) to finish; ``ChdbBusy`` when a live process keeps it."""
    folder = _chdb_folder(url)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lfpipe.lock", "a+")  # noqa: SIM115 - held for the life of the process
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise ChdbBusy(read_owner(url) or {}) from None
                time.sleep(0.2)
        _held_locks.append(handle)
        (folder / LOCK_NAME).write_bytes(orjson.dumps({"pid": os.getpid(), "role": role, "web_port": web_port}))
        return clickhouse_connect.get_client(dsn=f"chdb://{folder.resolve()}")
    return clickhouse_connect.get_client(dsn=url)


_held_locks: list[Any] = []


def _to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class ClickHouseSink:
    """Batched inserts and batched reads of stored rows, on one thread (chDB is synchronous)."""

    def __init__(self, client: Client, retry_max_seconds: float = 30.0) -> None:
        self.client = client
        self.retry_max_seconds = retry_max_seconds
        self.stopping = threading.Event()
        self.read_failing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._columns: dict[str, list[str]] = {}

    async def run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def columns(self, table: str) -> list[str]:
        if table not in self._columns:
            result = self.client.query(
                f"SELECT name FROM system.columns WHERE database = currentDatabase() "
                f"AND table = '{table}' ORDER BY position"
            )
            self._columns[table] = [row[0] for row in result.result_rows]
        return self._columns[table]

    def insert_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Insert row dicts (timestamps in epoch ms); returns the bytes ClickHouse reports written."""
        if not rows:
            return 0
        names = [name for name in self.columns(table) if name in rows[0]]
        data = [[_to_datetime(row[name]) if name in DATETIME_COLUMNS else row[name] for name in names] for row in rows]
        return self.client.insert(table, data, column_names=names).written_bytes()

    def insert_clocks(self, clocks: Iterable[tuple[str, str, str, dict[str, Any]]], now_ms: int) -> int:
        """Insert merge clocks; returns the bytes ClickHouse reports written."""
        rows = [
            [project, entity, entity_id, orjson.dumps(clock).decode(), _to_datetime(now_ms)]
            for entity, project, entity_id, clock in clocks
        ]
        if not rows:
            return 0
        columns = ["project_id", "entity", "id", "clocks", "event_ts"]
        return self.client.insert("merge_clocks", rows, column_names=columns).written_bytes()

    def read_states(
        self, keys: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]]:
        """Stored rows and clocks for (entity, project, id) keys.

        One primary-key lookup in ``merge_clocks`` finds the entities that exist; only those are read from
        their tables. A row without clocks can only come from a crash inside the entity's first flush, whose
        events are all uncommitted and come back, so treating that entity as new is exact.
        """
        keys = list(keys)
        if not keys:
            return {}
        known = self.client.query(
            "SELECT entity, project_id, id, clocks FROM merge_clocks FINAL "
            "WHERE (entity, project_id, id) IN {keys:Array(Tuple(String, String, String))}",
            parameters={"keys": keys},
        ).result_rows
        clocks = {(entity, project, entity_id): orjson.loads(raw) for entity, project, entity_id, raw in known}
        wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
        for entity, project, entity_id in clocks:
            wanted[(entity, project)].append(entity_id)
        found: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        for (entity, project), ids in wanted.items():
            columns = ["id", "project_id", "created_at", "metadata", *sorted(RECORD_FIELDS[entity])]
            if entity == "trace":
                columns.append("tags")
            rows = self.client.query(
                f"SELECT {', '.join(columns)} FROM {TABLE_BY_ENTITY[entity]} FINAL "
                "WHERE project_id = {project:String} AND id IN {ids:Array(String)}",
                parameters={"project": project, "ids": ids},
            ).named_results()
            for row in rows:
                key = (entity, project, row["id"])
                found[key] = (row, clocks[key])
        return found

    def trace_footprint(
        self, project_id: str, trace_id: str
    ) -> tuple[int | None, frozenset[str], list[tuple[str, str]]]:
        """When the trace's rows were first written (epoch ms; None without rows), the ids of its observations
        and scores, and its media links (media id, bucket path). Every stored version counts, not only the
        latest, so the answer is the same when a deletion is retried."""
        parameters = {"project": project_id, "trace": trace_id}
        firsts = []
        for table, column in TRACE_ROWS[:3]:
            first = self.client.query(
                f"SELECT minOrNull(created_at) FROM {table} "
                f"WHERE project_id = {{project:String}} AND {column} = {{trace:String}}",
                parameters=parameters,
            ).result_rows[0][0]
            if first is not None:
                firsts.append(int((first if first.tzinfo else first.replace(tzinfo=UTC)).timestamp() * 1000))
        members = self.client.query(
            "SELECT DISTINCT id FROM observations WHERE project_id = {project:String} AND trace_id = {trace:String} "
            "UNION DISTINCT SELECT DISTINCT id FROM scores "
            "WHERE project_id = {project:String} AND trace_id = {trace:String}",
            parameters=parameters,
        ).result_rows
        links = self.client.query(
            "SELECT DISTINCT media_id, bucket_path FROM media "
            "WHERE project_id = {project:String} AND trace_id = {trace:String}",
            parameters=parameters,
        ).result_rows
        return (
            min(firsts) if firsts else None,
            frozenset(row[0] for row in members),
            [(media_id, path) for media_id, path in links],
        )

    def delete_trace_rows(self, project_id: str, trace_id: str, members: frozenset[str]) -> None:
        """Every stored version of the trace's rows and merge clocks, gone (lightweight deletes: the data
        does not stay behind in a tombstone)."""
        parameters = {"project": project_id, "trace": trace_id, "members": sorted(members)}
        for table, column in TRACE_ROWS:
            self.client.command(
                f"DELETE FROM {table} WHERE project_id = {{project:String}} AND {column} = {{trace:String}}",
                parameters=parameters,
            )
        self.client.command(
            "DELETE FROM merge_clocks WHERE project_id = {project:String} AND ((entity = 'trace' AND id = "
            "{trace:String}) OR (entity IN ('observation', 'score') AND id IN {members:Array(String)}))",
            parameters=parameters,
        )

    def media_linked_elsewhere(self, project_id: str, trace_id: str, media_ids: list[str]) -> set[str]:
        """Which of ``media_ids`` a live row of another trace of the project still references."""
        if not media_ids:
            return set()
        rows = self.client.query(
            "SELECT DISTINCT media_id FROM media FINAL WHERE project_id = {project:String} "
            "AND media_id IN {ids:Array(String)} AND trace_id != {trace:String}",
            parameters={"project": project_id, "ids": media_ids, "trace": trace_id},
        ).result_rows
        return {row[0] for row in rows}

    def read_states_patiently(
        self, keys: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]]:
        """``read_states``, retried with back-off while ClickHouse is unreachable (backpressure, no crash);
        gives up only when the worker is stopping, leaving the batch un-acked."""
        keys = list(keys)
        delay = 0.2
        while True:
            try:
                found = self.read_states(keys)
                self.read_failing = False
                return found
            except Exception as exc:
                if self.stopping.is_set():
                    raise
                self.read_failing = True
                metrics.SINK_ERRORS.labels("clickhouse-read").inc()
                log.warning("reading stored rows failed (%s); retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, self.retry_max_seconds)

    def close(self) -> None:
        self.stopping.set()
        self._thread.shutdown(wait=True)
        self.client.close()
