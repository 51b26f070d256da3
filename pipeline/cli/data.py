"""``lfpipe rebuild``, ``lfpipe retention apply`` and ``lfpipe query``: the stored data, re-derived from the
archive, aged out, and read."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import (
    console,
    endpoints_or_fail,
    exclusive_clickhouse,
    fail,
    iso_ms,
    progress_bar,
    settings_from_env,
)

retention = typer.Typer(help="Per-project retention of rows, archive and media.", no_args_is_help=True)


def rebuild(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    from_time: Annotated[str | None, typer.Option(help="ISO time: messages produced at or after it.")] = None,
    to_time: Annotated[str | None, typer.Option(help="ISO time: messages produced before it.")] = None,
    database: Annotated[
        str | None, typer.Option(help="Rebuild into this database (created and migrated); default: in place.")
    ] = None,
) -> None:
    """Re-derive the ClickHouse tables from the raw archive: into a fresh database, or in place (idempotent)."""
    from pipeline.operations.rebuild import Selection, prepare_target, rebuild_from_archive

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    selection = Selection(project, iso_ms(from_time), iso_ms(to_time))
    client = exclusive_clickhouse(settings, "rebuild")
    try:
        prepare_target(client, database)
    except ValueError as exc:
        fail(str(exc))
    with progress_bar("rebuilding") as progress:
        task = progress.add_task("rebuild", total=None)
        report = asyncio.run(
            rebuild_from_archive(
                endpoints,
                settings.topic("config"),
                client,
                selection,
                settings.max_event_bytes,
                lambda n: progress.advance(task, n),
            )
        )
    target = f"database {database}" if database else "place"
    console.print(
        f"rebuilt {report.events} events from {report.records} archived messages in {target}: "
        f"{report.rows} rows, {report.media_objects} media objects"
    )
    for entity, reason in sorted(report.refused.items()):
        console.print(f"[yellow]refused by a store[/]: {entity}: {reason}")


@retention.command("apply")
def retention_apply(
    policy: Annotated[
        Path, typer.Option(help="TOML: default_days = N and a [projects] table of project = days.", exists=True)
    ],
    as_of: Annotated[str | None, typer.Option(help="ISO time to apply it as of (default: now).")] = None,
) -> None:
    """Remove what is older than each project's retention: rows, archived messages, unreferenced media."""
    from pipeline.operations.retention import Policy, run_retention

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    try:
        rules = Policy.load(policy)
    except (ValueError, TypeError) as exc:
        fail(f"{policy}: {exc}")
    client = exclusive_clickhouse(settings, "retention")
    report = asyncio.run(run_retention(endpoints, client, rules, iso_ms(as_of)))
    console.print(
        f"retention applied to {report.projects} projects: {report.archive_messages_removed} archived messages "
        f"removed from {report.archive_objects_rewritten} objects, {report.media_objects_deleted} media objects deleted"
    )


def query(
    sql: Annotated[str, typer.Argument(help="SQL to run.")],
    output: Annotated[str, typer.Option("--format", help="table or json (one object per line).")] = "table",
) -> None:
    """Query ClickHouse: the embedded chDB folder, or (read-only, SELECT only) the worker that holds it."""
    from pipeline.runtime.query import query_clickhouse

    try:
        columns, rows = query_clickhouse(settings_from_env().clickhouse_dsn, sql)
    except Exception as exc:
        fail(str(exc))
    if output == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n")
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    Console().print(table)
