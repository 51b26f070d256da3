"""Per-project retention, applied by a command operators schedule (``lfpipe retention apply``).

For each project with a retention of N days, everything older than now - N days goes:

* ClickHouse rows by their own time (traces and scores by ``timestamp``, observations by ``start_time``),
  media links and merge clocks by when they were written;
* archived messages of the project in archive objects written before the cutoff (objects are filed by the
  hour they were written and hold many projects, so they are rewritten without the project's messages);
* media objects of the project that no remaining row references.

A rebuild can only restore what the archive still holds, so give the archive at least the retention of the
rows. Every step is idempotent: running it again removes nothing more until time moves on.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.archive_layout import HOUR_MS, ROOT, hour_written
from pipeline.endpoints import Endpoints
from pipeline.recordfile import Record
from pipeline.sinks.archive import rewrite_object
from pipeline.stores.clickhouse import ClickHouse, Client
from pipeline.stores.objects import ObjectStore

DAY_MS = 86_400_000
# Table -> the column that dates a row.
ROW_TIMES = {
    "traces": "timestamp",
    "observations": "start_time",
    "scores": "timestamp",
    "media": "created_at",
    "merge_clocks": "event_ts",
}


@dataclass(frozen=True)
class Policy:
    """Retention days by project; ``default_days`` for projects not listed (None: keep forever)."""

    days: dict[str, float]
    default_days: float | None = None

    @classmethod
    def load(cls, path: Path) -> Policy:
        """``default_days = 90`` and a ``[projects]`` table of ``"<project id>" = days``."""
        document = tomllib.loads(path.read_text())
        days = {str(project): float(value) for project, value in document.get("projects", {}).items()}
        if any(value < 0 for value in days.values()) or document.get("default_days", 0) < 0:
            raise ValueError("retention days cannot be negative")
        default = document.get("default_days")
        return cls(days, None if default is None else float(default))

    def cutoffs(self, projects: set[str], now_ms: int) -> dict[str, int]:
        """Epoch ms before which each project's data goes."""
        cutoffs = {}
        for project in projects | set(self.days):
            days = self.days.get(project, self.default_days)
            if days is not None:
                cutoffs[project] = now_ms - int(days * DAY_MS)
        return cutoffs


@dataclass
class RetentionReport:
    projects: int = 0
    archive_objects_rewritten: int = 0
    archive_messages_removed: int = 0
    media_objects_deleted: int = 0


def known_projects(clickhouse: ClickHouse) -> set[str]:
    rows = clickhouse.client.query(
        "SELECT DISTINCT project_id FROM traces UNION DISTINCT SELECT DISTINCT project_id FROM observations"
    ).result_rows
    return {row[0] for row in rows}


def delete_old_rows(clickhouse: ClickHouse, project_id: str, cutoff_ms: int) -> None:
    for table, column in ROW_TIMES.items():
        clickhouse.client.command(
            f"DELETE FROM {table} WHERE project_id = {{project:String}} "
            f"AND {column} < fromUnixTimestamp64Milli({{cutoff:Int64}})",
            parameters={"project": project_id, "cutoff": cutoff_ms},
        )


def linked_media(clickhouse: ClickHouse, project_id: str) -> set[str]:
    rows = clickhouse.client.query(
        "SELECT DISTINCT media_id FROM media FINAL WHERE project_id = {project:String}",
        parameters={"project": project_id},
    ).result_rows
    return {row[0] for row in rows}


async def apply_retention(
    clickhouse: ClickHouse, store: ObjectStore, policy: Policy, now_ms: int | None = None
) -> RetentionReport:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    report = RetentionReport()
    cutoffs = policy.cutoffs(await clickhouse.run(known_projects, clickhouse), now_ms)
    report.projects = len(cutoffs)
    for project, cutoff in sorted(cutoffs.items()):
        await clickhouse.run(delete_old_rows, clickhouse, project, cutoff)
    await _trim_archive(store, cutoffs, report)
    for project in sorted(cutoffs):
        linked = await clickhouse.run(linked_media, clickhouse, project)
        async for key in store.list(f"media/{project}/"):
            if key.rsplit("/", 1)[-1].split(".", 1)[0] not in linked:
                await store.delete(key)
                report.media_objects_deleted += 1
    return report


async def run_retention(endpoints: Endpoints, client: Client, policy: Policy, now_ms: int | None) -> RetentionReport:
    """``apply_retention`` on the configured archive and ClickHouse."""
    store, clickhouse = endpoints.archive(), ClickHouse(client)
    try:
        return await apply_retention(clickhouse, store, policy, now_ms)
    finally:
        await store.close()
        clickhouse.close()


async def _trim_archive(store: ObjectStore, cutoffs: dict[str, int], report: RetentionReport) -> None:
    if not cutoffs:
        return
    latest = max(cutoffs.values())
    async for key in store.list(ROOT):
        written_ms = hour_written(key)
        if written_ms is None or written_ms + HOUR_MS > latest:
            continue  # written (partly) after every cutoff: nothing in it is due yet
        expired = {project for project, cutoff in cutoffs.items() if written_ms + HOUR_MS <= cutoff}
        removed = await rewrite_object(store, key, _outside(expired))
        if removed:
            report.archive_objects_rewritten += 1
            report.archive_messages_removed += removed


def _outside(projects: set[str]) -> Callable[[Record], bool]:
    return lambda record: _project_of(record.value) not in projects


def _project_of(value: bytes) -> str | None:
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return event.get("project_id") if isinstance(event, dict) else None
