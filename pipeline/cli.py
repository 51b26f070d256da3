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
models = typer.Typer(help="Model cost tables: defaults plus run-time models on the config topic.", no_args_is_help=True)
score_configs = typer.Typer(help="Score configs on the config topic.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(topics, name="topics")
app.add_typer(models, name="models")
app.add_typer(score_configs, name="score-configs")
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


async def _read_catalog(settings: Settings) -> Any:
    from pipeline.sources.config_feed import ConfigFeed
    from pipeline.transforms.catalog import Catalog

    catalog = Catalog.with_defaults()
    feed = ConfigFeed(_endpoints(settings).kafka_bootstrap, settings.topic("config"), catalog)
    try:
        await feed.start()
    finally:
        await feed.stop()
    return catalog


async def _send_config(settings: Settings, key: str, value: dict[str, Any] | None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=_endpoints(settings).kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("config"), None if value is None else orjson.dumps(value), key=key.encode()
        )
    finally:
        await producer.stop()


@models.command("list")
def models_list(project: Annotated[str | None, typer.Option(help="Show what this project sees.")] = None) -> None:
    """Models in effect (project models first, then defaults), with default-tier prices per unit."""
    catalog = asyncio.run(_read_catalog(_settings()))
    table = Table("model", "scope", "match", "tokenizer", "tiers", "input", "output")
    for model in catalog.model_table.models:
        if model.project_id not in (None, project):
            continue
        default = next((t for t in model.tiers if t.is_default), None)
        prices = default.prices if default else {}
        table.add_row(
            model.name,
            model.project_id or "default",
            model.match,
            (model.tokenizer or {}).get("id", ""),
            str(len(model.tiers)),
            str(prices.get("input", "")),
            str(prices.get("output", "")),
        )
    Console().print(table)


@models.command("add")
def models_add(
    file: Annotated[
        Path, typer.Argument(help="A model as JSON (format of pipeline/models/default_models.json).", exists=True)
    ],
    project: Annotated[str | None, typer.Option(help="Only for this project (default: every project).")] = None,
) -> None:
    """Add or replace a model; every worker applies it to its next batch."""
    from pipeline.transforms.pricing import model_from_dict

    raw = orjson.loads(file.read_bytes())
    try:
        model = model_from_dict(raw, project)
    except (KeyError, ValueError, TypeError) as exc:
        _fail(f"{file} is not a valid model: {exc!r}")
    key = f"model/{project or '*'}/{model.id}"
    asyncio.run(_send_config(_settings(), key, raw))
    console.print(f"model {model.name!r} published as {key}")


@models.command("remove")
def models_remove(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    project: Annotated[str | None, typer.Option(help="The project it was added for.")] = None,
) -> None:
    """Remove a model added with `models add`."""
    key = f"model/{project or '*'}/{model_id}"
    asyncio.run(_send_config(_settings(), key, None))
    console.print(f"removed {key}")


@models.command("test")
def models_test(
    name: Annotated[str, typer.Argument(help="A model name as producers send it.")],
    project: Annotated[str, typer.Option(help="Project to match for.")] = "",
    usage: Annotated[str | None, typer.Option(help='Usage JSON to price, e.g. {"input": 1000}.')] = None,
) -> None:
    """Which model a name matches, and what a usage would cost."""
    from pipeline.transforms.enrich import enrich_observation

    catalog = asyncio.run(_read_catalog(_settings()))
    model = catalog.model_table.match(project, name)
    if model is None:
        console.print(f"{name!r} matches no model: no cost is computed")
        raise typer.Exit(1)
    console.print(f"{name!r} matches {model.name!r} (id {model.id}, {model.project_id or 'default'}): {model.match}")
    if usage:
        result = enrich_observation(catalog.model_table, project, name, orjson.loads(usage), None)
        console.print(f"tier {result.pricing_tier_name}: cost {result.cost_details}, total {result.total_cost}")


@score_configs.command("add")
def score_configs_add(
    file: Annotated[
        Path, typer.Argument(help="JSON: id, name, data_type, min_value, max_value, categories.", exists=True)
    ],
    project: Annotated[str, typer.Option(help="The project the config belongs to.")],
) -> None:
    """Add or replace a score config (scores reference it by configId)."""
    from pipeline.transforms.catalog import Catalog

    raw = orjson.loads(file.read_bytes())
    key = f"score-config/{project}/{raw.get('id')}"
    try:
        Catalog([]).apply(key, raw)
    except Exception as exc:
        _fail(f"{file} is not a valid score config: {exc}")
    asyncio.run(_send_config(_settings(), key, raw))
    console.print(f"score config published as {key}")


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
