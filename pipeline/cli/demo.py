"""``lfpipe demo``: the whole path on the local stack, from a recording to a summary of the stored rows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import console, endpoints_or_fail, fail, settings_from_env
from pipeline.cli.run import produce_with_progress
from pipeline.config import Settings

SAMPLE_RECORDING = Path(__file__).resolve().parents[2] / "load" / "recordings" / "sample.lfr.zst"
TOTALS_SQL = (
    "SELECT (SELECT count() FROM traces FINAL), (SELECT count() FROM observations FINAL), "
    "(SELECT count() FROM scores FINAL), (SELECT sum(total_cost) FROM observations FINAL)"
)


def demo(
    recording: Annotated[Path, typer.Option(help="Recording to replay.", exists=True)] = SAMPLE_RECORDING,
) -> None:
    """Stack up, topics, migrations, replay the bundled recording through a worker, print a summary."""
    from devstack.local import stack_up
    from pipeline.producer import file_records

    settings = settings_from_env()
    with console.status("starting the local stack (first run resolves Kafka jars with Maven)"):
        stack_up(settings.stack_dir)
    endpoints = endpoints_or_fail(settings)
    _lfpipe("topics", "apply")
    _lfpipe("migrate")
    records = file_records(recording)
    sent = asyncio.run(produce_with_progress(endpoints.kafka_bootstrap, settings.topic("ingestion"), records))
    console.print(f"replayed {sent} recorded messages; running a worker until it has drained the topic")
    started = time.monotonic()
    _lfpipe("worker", "--exit-when-idle", "3", "--loglevel", "warning")
    wall = time.monotonic() - started
    summary = json.loads((settings.stack_dir / "worker-summary.json").read_text())
    _print_summary(settings, sent, summary, wall)


def _lfpipe(*args: str) -> None:
    """Run another lfpipe command as its own process (the worker must own its interpreter)."""
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=False)
    if result.returncode != 0:
        fail(f"`lfpipe {' '.join(args)}` failed with exit code {result.returncode}")


def _print_summary(settings: Settings, sent: int, summary: dict[str, Any], wall: float) -> None:
    from pipeline.runtime.query import query_clickhouse

    _, rows = query_clickhouse(settings.clickhouse_dsn, TOTALS_SQL)
    traces, observations, scores, cost = rows[0]
    table = Table("measure", "value", title="demo summary")
    table.add_row("messages replayed", str(sent))
    table.add_row("events processed", str(summary.get("processed", 0)))
    table.add_row("duplicates dropped", str(summary.get("deduplicated", 0)))
    table.add_row("dead letters", str(summary.get("dead_lettered", 0)))
    table.add_row("traces / observations / scores", f"{traces} / {observations} / {scores}")
    table.add_row("total cost (USD)", str(Decimal(str(cost or 0)).normalize()))
    table.add_row("events/s while processing", str(summary.get("events_per_second")))
    table.add_row("worker wall time incl. start-up (s)", f"{wall:.1f}")
    Console().print(table)
