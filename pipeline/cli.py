"""``lfpipe``: the operator's command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import Settings
from pipeline.endpoints import StackNotRunning, resolve

app = typer.Typer(
    help="Kafka -> Faust -> ClickHouse ingestion pipeline for Langfuse-style events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dev = typer.Typer(help="The local stack: Kafka (KRaft) and SeaweedFS on 127.0.0.1.", no_args_is_help=True)
topics = typer.Typer(help="Topics declared in topics/topics.toml.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(topics, name="topics")
console = Console(stderr=True)
SAMPLE_RECORDING = Path(__file__).resolve().parents[1] / "load" / "recordings" / "sample.lfr.zst"


def _settings() -> Settings:
    return Settings()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _endpoints(settings: Settings) -> Any:
    try:
        return resolve(settings)
    except StackNotRunning as exc:
        _fail(str(exc))


@dev.command("up")
def dev_up(no_s3: Annotated[bool, typer.Option(help="Skip SeaweedFS (archive to a folder).")] = False) -> None:
    """Start Kafka and SeaweedFS (resolving the Kafka jars with Maven on first use)."""
    from pipeline.stack.local import stack_up

    settings = _settings()
    with console.status("starting the local stack (first run resolves Kafka jars with Maven)"):
        state = stack_up(settings.stack_dir, with_s3=not no_s3)
    _print_status(state)


@dev.command("down")
def dev_down() -> None:
    """Stop the servers this stack started (by PID)."""
    from pipeline.stack.local import stack_down

    stopped = stack_down(_settings().stack_dir)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev.command("status")
def dev_status() -> None:
    """Show what runs, where."""
    from pipeline.stack.local import stack_status

    _print_status(stack_status(_settings().stack_dir))


def _print_status(state: dict[str, Any]) -> None:
    table = Table("service", "pid", "address", "log")
    for name, entry in state.items():
        address = entry.get("bootstrap") or entry.get("endpoint") or ""
        running = entry.get("running", True)
        table.add_row(name, str(entry.get("pid")) if running else "stopped", address, entry.get("log", ""))
    Console().print(table)


@topics.command("apply")
def topics_apply() -> None:
    """Create missing topics and report drift; running it twice changes nothing."""
    from pipeline.sources.topics import apply_topics, load_topic_specs

    settings = _settings()
    endpoints = _endpoints(settings)
    report = asyncio.run(apply_topics(endpoints.kafka_bootstrap, load_topic_specs(settings.topic_prefix)))
    for name in report.created:
        console.print(f"[green]created[/green] {name}")
    for name in report.unchanged:
        console.print(f"unchanged {name}")
    for line in report.drift:
        console.print(f"[yellow]drift[/yellow] {line}")


@app.command()
def migrate() -> None:
    """Apply pending ClickHouse migrations (schemas/clickhouse/migrations) and record them."""
    from pipeline.sinks.clickhouse import ChdbBusy, connect
    from pipeline.sinks.migrations import migrate as run_migrations

    settings = _settings()
    try:
        client = connect(settings.clickhouse_url or f"chdb://{settings.chdb_path}", "migrate")
    except ChdbBusy as exc:
        _fail(f"{exc}; stop it first, migrations need the data folder")
    applied, problems = run_migrations(client)
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    for problem in problems:
        console.print(f"[yellow]warning[/yellow] {problem}")
    if problems:
        raise typer.Exit(1)


@app.command()
def worker(
    exit_when_idle: Annotated[
        float | None, typer.Option(help="Exit once caught up and idle this many seconds (batch mode).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a worker of the consumer group (start more to scale out)."""
    from pipeline.sinks.clickhouse import ChdbBusy
    from pipeline.sinks.migrations import SchemaNotMigrated
    from pipeline.worker import run_worker

    settings = _settings()
    if exit_when_idle is not None:
        settings = settings.model_copy(update={"exit_when_idle": exit_when_idle})
    _endpoints(settings)
    try:
        run_worker(settings, loglevel)
    except SchemaNotMigrated as exc:
        _fail(str(exc))
    except ChdbBusy as exc:
        _fail(
            f"{exc}; embedded chDB allows one worker per data folder: use a ClickHouse server "
            "(LFPIPE_CLICKHOUSE_URL) to run several"
        )


@app.command()
def produce(
    file: Annotated[Path, typer.Argument(help="NDJSON envelopes, or an .lfr.zst recording.", exists=True)],
    project: Annotated[str | None, typer.Option(help="project_id for events that have none.")] = None,
) -> None:
    """Send events to the ingestion topic, keyed by project and entity."""
    from pipeline.producer import file_records

    settings = _settings()
    endpoints = _endpoints(settings)
    count = asyncio.run(_produce(endpoints.kafka_bootstrap, settings.topic("ingestion"), file_records(file, project)))
    console.print(f"sent {count} messages to {settings.topic('ingestion')}")


async def _produce(bootstrap: str, topic: str, records: Any) -> int:
    from pipeline.producer import EventProducer

    columns = (TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("produce", total=None)
        async with EventProducer(bootstrap, topic) as producer:
            return await producer.send_records(records, lambda n: progress.advance(task, n))


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    """Run SQL on the configured ClickHouse; with chDB held by a worker, ask that worker."""
    from pipeline.sinks.clickhouse import ChdbBusy, connect, read_owner

    url = settings.clickhouse_url or f"chdb://{settings.chdb_path}"
    try:
        client = connect(url, "query")
    except ChdbBusy:
        owner = read_owner(url) or {}
        if not owner.get("web_port"):
            raise
        request = urllib.request.Request(f"http://127.0.0.1:{owner['web_port']}/query", data=sql.encode())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(orjson.loads(exc.read()).get("error")) from None
        return body["columns"], body["rows"]
    result = client.query(sql)
    return list(result.column_names), [list(row) for row in result.result_rows]


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run.")],
    output: Annotated[str, typer.Option("--format", help="table or json (one object per line).")] = "table",
) -> None:
    """Query ClickHouse (the embedded chDB folder, or through the worker that holds it)."""
    try:
        columns, rows = run_query(_settings(), sql)
    except Exception as exc:
        _fail(str(exc))
    if output == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n")
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    Console().print(table)


@app.command()
def demo(
    recording: Annotated[Path, typer.Option(help="Recording to replay.", exists=True)] = SAMPLE_RECORDING,
) -> None:
    """Stack up, topics, migrations, replay the bundled recording through a worker, print a summary."""
    from pipeline.producer import file_records
    from pipeline.stack.local import stack_up

    settings = _settings()
    with console.status("starting the local stack (first run resolves Kafka jars with Maven)"):
        stack_up(settings.stack_dir)
    endpoints = _endpoints(settings)
    _cli("topics", "apply")
    _cli("migrate")
    sent = asyncio.run(_produce(endpoints.kafka_bootstrap, settings.topic("ingestion"), file_records(recording)))
    console.print(f"replayed {sent} recorded messages; running a worker until it has drained the topic")
    started = time.monotonic()
    _cli("worker", "--exit-when-idle", "3", "--loglevel", "warning")
    wall = time.monotonic() - started
    summary = json.loads((settings.stack_dir / "worker-summary.json").read_text())
    _print_summary(settings, sent, summary, wall)


def _cli(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=False)
    if result.returncode != 0:
        _fail(f"`lfpipe {' '.join(args)}` failed with exit code {result.returncode}")


def _print_summary(settings: Settings, sent: int, summary: dict[str, Any], wall: float) -> None:
    _, rows = run_query(
        settings,
        "SELECT (SELECT count() FROM traces FINAL), (SELECT count() FROM observations FINAL), "
        "(SELECT count() FROM scores FINAL), (SELECT sum(total_cost) FROM observations FINAL)",
    )
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
