"""``lfpipe worker`` and ``lfpipe produce``: run a worker of the consumer group; send events to the topic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import console, endpoints_or_fail, fail, progress_bar, settings_from_env
from pipeline.recordfile import Record


def worker(
    exit_when_idle: Annotated[
        float | None, typer.Option(help="Exit once caught up and idle this many seconds (batch mode).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a worker of the consumer group (start more to scale out)."""
    from pipeline.runtime.app import run_worker
    from pipeline.schema.migrations import SchemaNotMigrated
    from pipeline.stores.clickhouse import ChdbBusy

    settings = settings_from_env()
    if exit_when_idle is not None:
        settings = settings.model_copy(update={"exit_when_idle": exit_when_idle})
    endpoints_or_fail(settings)
    try:
        run_worker(settings, loglevel)
    except SchemaNotMigrated as exc:
        fail(str(exc))
    except ChdbBusy as exc:
        fail(
            f"{exc}; embedded chDB allows one worker per data folder: use a ClickHouse server "
            "(LFPIPE_CLICKHOUSE_URL) to run several"
        )


def produce(
    file: Annotated[Path, typer.Argument(help="NDJSON envelopes, or an .lfr.zst recording.", exists=True)],
    project: Annotated[str | None, typer.Option(help="project_id for events that have none.")] = None,
) -> None:
    """Send events to the ingestion topic, keyed by project and entity."""
    from pipeline.producer import file_records

    settings = settings_from_env()
    bootstrap, topic = endpoints_or_fail(settings).kafka_bootstrap, settings.topic("ingestion")
    count = asyncio.run(produce_with_progress(bootstrap, topic, file_records(file, project)))
    console.print(f"sent {count} messages to {topic}")


async def produce_with_progress(bootstrap: str, topic: str, records: Iterable[Record]) -> int:
    from pipeline.producer import EventProducer

    with progress_bar("producing") as progress:
        task = progress.add_task("produce", total=None)
        async with EventProducer(bootstrap, topic) as producer:
            return await producer.send_records(records, lambda n: progress.advance(task, n))
