"""``lfpipe``: the operator's command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.cli_common import console, endpoints_or_fail, fail, settings_from_env
from pipeline.config import Settings
from pipeline.gateway.commands import gateway, keys
from pipeline.transforms.catalog import model_key, score_config_key

app = typer.Typer(
    help="Kafka -> Faust -> ClickHouse ingestion pipeline for Langfuse-style events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dev = typer.Typer(help="The local stack: Kafka (KRaft) and SeaweedFS on 127.0.0.1.", no_args_is_help=True)
topics = typer.Typer(help="Topics declared in topics/topics.toml.", no_args_is_help=True)
models = typer.Typer(help="Model cost tables: defaults plus run-time models on the config topic.", no_args_is_help=True)
score_configs = typer.Typer(help="Score configs on the config topic.", no_args_is_help=True)
load = typer.Typer(help="Load testing: generate, record and replay streams; benchmark.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(topics, name="topics")
app.add_typer(models, name="models")
app.add_typer(score_configs, name="score-configs")
app.add_typer(load, name="load")
retention = typer.Typer(help="Per-project retention of rows, archive and media.", no_args_is_help=True)
app.add_typer(retention, name="retention")
dead_letters = typer.Typer(help="Inspect dead letters and replay them after a fix.", no_args_is_help=True)
app.add_typer(dead_letters, name="dead-letters")
app.add_typer(keys, name="keys")
app.command("gateway")(gateway)
SAMPLE_RECORDING = Path(__file__).resolve().parents[1] / "load" / "recordings" / "sample.lfr.zst"


@dev.command("up")
def dev_up(no_s3: Annotated[bool, typer.Option(help="Skip SeaweedFS (archive to a folder).")] = False) -> None:
    """Start Kafka and SeaweedFS (resolving the Kafka jars with Maven on first use)."""
    from pipeline.stack.local import stack_up

    settings = settings_from_env()
    with console.status("starting the local stack (first run resolves Kafka jars with Maven)"):
        state = stack_up(settings.stack_dir, with_s3=not no_s3)
    _print_status(state)


@dev.command("down")
def dev_down() -> None:
    """Stop the servers this stack started (by PID)."""
    from pipeline.stack.local import stack_down

    stopped = stack_down(settings_from_env().stack_dir)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev.command("status")
def dev_status() -> None:
    """Show what runs, where."""
    from pipeline.stack.local import stack_status

    _print_status(stack_status(settings_from_env().stack_dir))


def _print_status(state: dict[str, Any]) -> None:
    table = Table("service", "pid", "address", "log")
    for name, entry in state.items():
        address = entry.get("bootstrap") or entry.get("endpoint") or ""
        running = entry.get("running", True)
        table.add_row(name, str(entry.get("pid")) if running else "stopped", address, entry.get("log", ""))
    Console().print(table)


@topics.command("apply")
def topics_apply(
    replication_factor: Annotated[
        int | None,
        typer.Option(help="Override topics.toml's (1); 3 or more adds min.insync.replicas=2."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the topic settings instead of applying them.")] = False,
) -> None:
    """Create missing topics and report drift; running it twice changes nothing."""
    from pipeline.sources.topics import apply_topics, load_topic_specs, with_replication

    settings = settings_from_env()
    specs = load_topic_specs(settings.topic_prefix)
    if replication_factor is not None:
        specs = with_replication(specs, replication_factor)
    if dry_run:
        for spec in specs.values():
            settings_text = " ".join(f"{key}={value}" for key, value in sorted(spec.config.items()))
            sys.stdout.write(
                f"{spec.name} partitions={spec.partitions} replication_factor={spec.replication_factor} "
                f"{settings_text}\n"
            )
        return
    endpoints = endpoints_or_fail(settings)
    report = asyncio.run(apply_topics(endpoints.kafka_bootstrap, specs))
    for name in report.created:
        console.print(f"[green]created[/green] {name}")
    for name in report.unchanged:
        console.print(f"unchanged {name}")
    for line in report.drift:
        console.print(f"[yellow]drift[/yellow] {line}")


@app.command()
def migrate(
    cluster: Annotated[
        str | None,
        typer.Option(help="Print the variant for this cluster (Replicated, ON CLUSTER, Distributed)."),
    ] = None,
) -> None:
    """Apply pending ClickHouse migrations (schemas/clickhouse/migrations) and record them."""
    from pipeline.sinks.migrations import load_migrations
    from pipeline.sinks.migrations import migrate as run_migrations
    from pipeline.stores.clickhouse import ChdbBusy, connect

    if cluster is not None:
        from pipeline.sinks.cluster import cluster_script

        sys.stdout.write(cluster_script(load_migrations(), cluster))
        return
    settings = settings_from_env()
    try:
        client = connect(settings.clickhouse_url or f"chdb://{settings.chdb_path}", "migrate")
    except ChdbBusy as exc:
        fail(f"{exc}; stop it first, migrations need the data folder")
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
    from pipeline.runtime.app import run_worker
    from pipeline.sinks.migrations import SchemaNotMigrated
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


@app.command()
def produce(
    file: Annotated[Path, typer.Argument(help="NDJSON envelopes, or an .lfr.zst recording.", exists=True)],
    project: Annotated[str | None, typer.Option(help="project_id for events that have none.")] = None,
) -> None:
    """Send events to the ingestion topic, keyed by project and entity."""
    from pipeline.producer import file_records

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    count = asyncio.run(_produce(endpoints.kafka_bootstrap, settings.topic("ingestion"), file_records(file, project)))
    console.print(f"sent {count} messages to {settings.topic('ingestion')}")


async def _produce(bootstrap: str, topic: str, records: Any) -> int:
    from pipeline.producer import EventProducer

    with _progress("producing") as progress:
        task = progress.add_task("produce", total=None)
        async with EventProducer(bootstrap, topic) as producer:
            return await producer.send_records(records, lambda n: progress.advance(task, n))


async def _read_catalog(settings: Settings) -> Any:
    from pipeline.sources.config_feed import read_config
    from pipeline.transforms.catalog import Catalog

    catalog = Catalog.with_defaults()
    await read_config(endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config"), catalog.apply)
    return catalog


async def _send_config(settings: Settings, key: str, value: dict[str, Any] | None) -> None:
    from pipeline.sources.config_feed import publish_config

    await publish_config(endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config"), key, value)


@models.command("list")
def models_list(project: Annotated[str | None, typer.Option(help="Show what this project sees.")] = None) -> None:
    """Models in effect (project models first, then defaults), with default-tier prices per unit."""
    catalog = asyncio.run(_read_catalog(settings_from_env()))
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
        fail(f"{file} is not a valid model: {exc!r}")
    key = model_key(project, model.id)
    asyncio.run(_send_config(settings_from_env(), key, raw))
    console.print(f"model {model.name!r} published as {key}")


@models.command("remove")
def models_remove(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    project: Annotated[str | None, typer.Option(help="The project it was added for.")] = None,
) -> None:
    """Remove a model added with `models add`."""
    key = model_key(project, model_id)
    asyncio.run(_send_config(settings_from_env(), key, None))
    console.print(f"removed {key}")


@models.command("test")
def models_test(
    name: Annotated[str, typer.Argument(help="A model name as producers send it.")],
    project: Annotated[str, typer.Option(help="Project to match for.")] = "",
    usage: Annotated[str | None, typer.Option(help='Usage JSON to price, e.g. {"input": 1000}.')] = None,
) -> None:
    """Which model a name matches, and what a usage would cost."""
    from pipeline.transforms.enrich import enrich_observation

    catalog = asyncio.run(_read_catalog(settings_from_env()))
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
    key = score_config_key(project, str(raw.get("id")))
    try:
        Catalog([]).apply(key, raw)
    except Exception as exc:
        fail(f"{file} is not a valid score config: {exc}")
    asyncio.run(_send_config(settings_from_env(), key, raw))
    console.print(f"score config published as {key}")


def _progress(label: str) -> Progress:
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


@load.command("generate")
def load_generate(
    out: Annotated[Path, typer.Argument(help="Recording to write (.lfr.zst).")],
    traces: Annotated[int, typer.Option(help="Traces to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 7,
    mix: Annotated[str, typer.Option(help="Trace kinds and weights.")] = "agent=2,dify=1,ragflow=1",
    projects: Annotated[int, typer.Option(help="Projects (traffic is skewed to the first ones).")] = 10,
    out_of_order: Annotated[float, typer.Option(help="Share of events swapped with their predecessor.")] = 0.05,
    duplicates: Annotated[float, typer.Option(help="Share of events sent twice.")] = 0.01,
    invalid: Annotated[float, typer.Option(help="Invalid messages per event.")] = 0.005,
    separate_updates: Annotated[float, typer.Option(help="Share of observations ended by an update.")] = 1.0,
    extra_scores: Annotated[float, typer.Option(help="Chance of extra scores per trace.")] = 0.3,
    media: Annotated[float, typer.Option(help="Share of user messages with a base64 image.")] = 0.01,
    large_payloads: Annotated[float, typer.Option(help="Share of generations with a 100-400 KB input.")] = 0.002,
    tools: Annotated[float, typer.Option(help="Share of agent generations that offer tools and call one.")] = 0.3,
) -> None:
    """Write a synthetic stream of realistic shape (deterministic for a seed)."""
    from load.generate import SCENARIOS, StreamShape, generate_stream
    from pipeline.recordfile import write_records

    weights = {name: float(weight) for name, _, weight in (part.partition("=") for part in mix.split(","))}
    unknown = set(weights) - set(SCENARIOS)
    if unknown:
        fail(f"unknown trace kinds {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
    shape = StreamShape(
        traces=traces,
        seed=seed,
        mix=weights,
        projects=projects,
        out_of_order=out_of_order,
        duplicates=duplicates,
        invalid=invalid,
        separate_updates=separate_updates,
        extra_scores=extra_scores,
        media=media,
        large_payloads=large_payloads,
        tools=tools,
    )
    with _progress("generating") as progress, open(out, "wb") as handle:
        task = progress.add_task("generate", total=None)

        def counted() -> Any:
            for record in generate_stream(shape):
                progress.advance(task)
                yield record

        count = write_records(handle, counted())
    console.print(f"wrote {count} messages to {out}")


@load.command("record")
def load_record(
    out: Annotated[Path, typer.Argument(help="Recording to write (.lfr.zst).")],
    topic: Annotated[str, typer.Option(help="Topic (without prefix).")] = "ingestion",
    from_offset: Annotated[int | None, typer.Option(help="First offset of every partition.")] = None,
    to_offset: Annotated[int | None, typer.Option(help="Stop before this offset in every partition.")] = None,
    from_time: Annotated[str | None, typer.Option(help="ISO time to start from.")] = None,
    to_time: Annotated[str | None, typer.Option(help="ISO time to stop at.")] = None,
    seconds: Annotated[float | None, typer.Option(help="Record new messages for this long instead.")] = None,
) -> None:
    """Record a topic (offset range, time range, or the next N seconds) into a recording."""
    from datetime import datetime

    from load.record import Window, record_topic

    def ms(value: str | None) -> int | None:
        return None if value is None else int(datetime.fromisoformat(value).timestamp() * 1000)

    settings = settings_from_env()
    window = Window(from_offset, to_offset, ms(from_time), ms(to_time), seconds)
    with _progress("recording") as progress:
        task = progress.add_task("record", total=None)
        count = asyncio.run(
            record_topic(
                endpoints_or_fail(settings).kafka_bootstrap,
                settings.topic(topic),
                out,
                window,
                lambda n: progress.advance(task, n),
            )
        )
    console.print(f"recorded {count} messages into {out}")


@load.command("replay")
def load_replay(
    source: Annotated[str, typer.Argument(help="A recording (.lfr.zst) or an archive URL (s3://bucket/prefix).")],
    speed: Annotated[float | None, typer.Option(help="N times the recorded pace.")] = None,
    rate: Annotated[float | None, typer.Option(help="Fixed events per second.")] = None,
    rewrite: Annotated[str | None, typer.Option(help="Suffix for every id and project id.")] = None,
) -> None:
    """Produce a recording (or the raw archive) to the ingestion topic; as fast as possible by default."""
    from load.replay import Pace, replay
    from pipeline.producer import EventProducer
    from pipeline.recordfile import read_records
    from pipeline.sinks.archive import archive_records
    from pipeline.stores.objects import open_store

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)

    async def source_records() -> list[Any]:
        if Path(source).is_file():
            with open(source, "rb") as handle:
                return list(read_records(handle))
        store = open_store(source, endpoints.s3_endpoint, endpoints.s3_access_key, endpoints.s3_secret_key)
        try:
            return [record async for record in archive_records(store)]
        finally:
            await store.close()

    async def run() -> int:
        records = await source_records()
        with _progress("replaying") as progress:
            task = progress.add_task("replay", total=len(records))
            async with EventProducer(endpoints.kafka_bootstrap, settings.topic("ingestion")) as producer:
                sent = await replay(
                    producer.send_record, records, Pace(speed, rate), rewrite, lambda n: progress.advance(task, n)
                )
                await producer.flush()
                return sent

    try:
        count = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
    console.print(f"replayed {count} messages to {settings.topic('ingestion')}")


@load.command("report")
def load_report(
    out: Annotated[Path | None, typer.Option(help="Folder for report.json and report.png.")] = None,
    worker_port: Annotated[
        list[int] | None,
        typer.Option(help="Web port of a worker to read latency from (repeat for several); default: the chDB owner."),
    ] = None,
    until_idle: Annotated[float, typer.Option(help="Stop once caught up with nothing new for this many seconds.")] = 5,
    max_seconds: Annotated[float, typer.Option(help="Stop after this long in any case.")] = 3600,
) -> None:
    """Watch a run (start it before a replay): throughput in and out, lag, dead letters, rows, latency."""
    from load.report import OffsetProbe, build_report, observe, render_chart, render_text
    from pipeline.stores.clickhouse import read_owner

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    ports = list(worker_port or [])
    if not ports and (owner := read_owner(settings.clickhouse_url or f"chdb://{settings.chdb_path}")):
        ports = [owner["web_port"]] if owner.get("web_port") else []
    folder = out or settings.stack_dir / "reports" / time.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    probe = OffsetProbe(
        endpoints.kafka_bootstrap,
        settings.consumer_group,
        settings.topic("ingestion"),
        settings.topic("ingestion-deadletter"),
    )

    async def run() -> Any:
        async with probe:
            with console.status("waiting for events") as status:
                announced = False

                def show(point: Any) -> None:
                    nonlocal announced
                    if not announced:  # from here on, new messages count: tools may start producing
                        console.print(f"watching {probe.topic} from {point.produced} messages, group {probe.group}")
                        announced = True
                    status.update(
                        f"{point.at:.0f}s: {point.produced} in, {point.committed} committed, lag {point.lag}, "
                        f"{point.dead_letters} dead letters"
                    )

                return await observe(probe, ports, until_idle, max_seconds, show)

    samples, latency = asyncio.run(run())
    tables = ("traces", "observations", "scores")
    _, counts = run_query(settings, "SELECT " + ", ".join(f"(SELECT count() FROM {t} FINAL)" for t in tables))
    report = build_report(samples, latency, dict(zip(tables, counts[0], strict=True)))
    (folder / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    render_chart(samples, folder / "report.png", f"run of {report.committed} events")
    if not ports:
        console.print("no worker web port known: latency percentiles are missing (pass --worker-port)")
    sys.stdout.write(render_text("run report", report.figures()) + "\n")
    console.print(f"report: {folder / 'report.json'}, chart: {folder / 'report.png'}")


@load.command("benchmark")
def load_benchmark(
    traces: Annotated[int, typer.Option(help="Traces in the generated stream.")] = 4000,
    seed: Annotated[int, typer.Option(help="Stream seed.")] = 11,
    latency_seconds: Annotated[float, typer.Option(help="Length of the half-load latency phase.")] = 30,
) -> None:
    """Pipeline vs raw-copy baseline on one generated stream: events/s, ratio, latency, RSS."""
    from load.benchmark import run_benchmark
    from load.report import render_text

    result = run_benchmark(settings_from_env(), traces, seed, latency_seconds, console.print)
    charts = result.pop("charts")
    sys.stdout.write(render_text("benchmark", result) + "\n")
    console.print("charts: " + ", ".join(charts))


@load.command("gateway")
def load_gateway(
    traces: Annotated[int, typer.Option(help="Traces in the generated stream (the benchmark's mix).")] = 2000,
    seed: Annotated[int, typer.Option(help="Stream seed.")] = 11,
    seconds: Annotated[float, typer.Option(help="Length of each load phase.")] = 15,
) -> None:
    """One gateway process under wrk: batches and OTLP exports per second, latency at full and half rate,
    against producing the same events straight to Kafka."""
    from load.gateway import run_gateway_load
    from load.report import render_text

    try:
        result = run_gateway_load(settings_from_env(), traces, seed, seconds, console.print)
    except RuntimeError as exc:
        fail(str(exc))
    sys.stdout.write(render_text("gateway load", result) + "\n")


@load.command("stages")
def load_stages(
    traces: Annotated[int, typer.Option(help="Traces in the generated stream (the benchmark's mix).")] = 4000,
    seed: Annotated[int, typer.Option(help="Stream seed.")] = 11,
) -> None:
    """The processor's stages alone on one core (no Kafka, ClickHouse or S3): time per event by stage."""
    from load.stages import render, run_stages

    with console.status("running the stages"):
        result = run_stages(traces, seed)
    sys.stdout.write(render(result) + "\n")


@app.command()
def rebuild(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    from_time: Annotated[str | None, typer.Option(help="ISO time: messages produced at or after it.")] = None,
    to_time: Annotated[str | None, typer.Option(help="ISO time: messages produced before it.")] = None,
    database: Annotated[
        str | None, typer.Option(help="Rebuild into this database (created and migrated); default: in place.")
    ] = None,
) -> None:
    """Re-derive the ClickHouse tables from the raw archive: into a fresh database, or in place (idempotent)."""
    import re
    from datetime import datetime

    from pipeline.rebuild import Selection
    from pipeline.rebuild import rebuild as run_rebuild
    from pipeline.sinks.migrations import migrate as run_migrations
    from pipeline.sinks.migrations import require_migrated
    from pipeline.sources.config_feed import read_config
    from pipeline.stores.clickhouse import ClickHouse
    from pipeline.transforms.catalog import Catalog

    def ms(value: str | None) -> int | None:
        return None if value is None else int(datetime.fromisoformat(value).timestamp() * 1000)

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    client = _exclusive_clickhouse(settings, "rebuild")
    if database is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
            fail(f"{database!r} is not a plain database name")
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.database = database
        run_migrations(client)
    else:
        require_migrated(client)
    selection = Selection(project, ms(from_time), ms(to_time))

    async def run() -> Any:
        # Models and score configs as the workers have them: a rebuild must price and validate the same way.
        catalog = Catalog.with_defaults()
        await read_config(endpoints.kafka_bootstrap, settings.topic("config"), catalog.apply)
        store = _archive_store(settings, endpoints)
        sink = ClickHouse(client)
        try:
            with _progress("rebuilding") as progress:
                task = progress.add_task("rebuild", total=None)
                return await run_rebuild(
                    store, sink, catalog, selection, settings.max_event_bytes, lambda n: progress.advance(task, n)
                )
        finally:
            await store.close()
            sink.close()

    report = asyncio.run(run())
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
    from datetime import datetime

    from pipeline.retention import Policy, apply_retention
    from pipeline.stores.clickhouse import ClickHouse

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    try:
        rules = Policy.load(policy)
    except (ValueError, TypeError) as exc:
        fail(f"{policy}: {exc}")
    client = _exclusive_clickhouse(settings, "retention")

    async def run() -> Any:
        store = _archive_store(settings, endpoints)
        sink = ClickHouse(client)
        try:
            now_ms = None if as_of is None else int(datetime.fromisoformat(as_of).timestamp() * 1000)
            return await apply_retention(sink, store, rules, now_ms)
        finally:
            await store.close()
            sink.close()

    report = asyncio.run(run())
    console.print(
        f"retention applied to {report.projects} projects: {report.archive_messages_removed} archived messages "
        f"removed from {report.archive_objects_rewritten} objects, {report.media_objects_deleted} media objects deleted"
    )


KindOption = Annotated[
    str | None,
    typer.Option(
        "--kind",
        help="Reason kind: too_large, malformed_json, invalid_envelope, unknown_type, invalid_body, wrong_key, "
        "failed_semantic_check, rejected_by_store, internal_error.",
    ),
]
ContainsOption = Annotated[str | None, typer.Option("--contains", help="Only reasons containing this text.")]


@dead_letters.command("list")
def dead_letters_list(
    kind: KindOption = None,
    contains: ContainsOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (counts cover all).")] = 50,
    output: Annotated[str, typer.Option("--format", help="table or json (one object per line).")] = "table",
) -> None:
    """Dead letters with their reasons, and counts by reason kind."""
    from collections import Counter

    from pipeline.deadletters import DeadLetterReader, LetterFilter

    settings = settings_from_env()
    letters_filter = LetterFilter(kind, contains)

    async def read() -> tuple[list[Any], Counter[str]]:
        shown, kinds = [], Counter()
        async with DeadLetterReader(
            endpoints_or_fail(settings).kafka_bootstrap, settings.topic("ingestion-deadletter")
        ) as r:
            async for letter in r.letters():
                if letters_filter.accepts(letter):
                    kinds[letter.kind] += 1
                    if len(shown) < limit:
                        shown.append(letter)
        return shown, kinds

    shown, kinds = asyncio.run(read())
    if output == "json":
        for letter in shown:
            topic, partition, offset = letter.origin
            line = {
                "timestamp_ms": letter.timestamp_ms,
                "kind": letter.kind,
                "reason": letter.reason,
                "key": (letter.key or b"").decode(errors="replace"),
                "origin": {"topic": topic, "partition": partition, "offset": offset},
                "payload_object": letter.payload_object,
            }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
    else:
        table = Table("time (UTC)", "kind", "key", "reason", title=f"dead letters ({sum(kinds.values())})")
        for letter in shown:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.timestamp_ms / 1000))
            key = (letter.key or b"").decode(errors="replace")[:40]
            table.add_row(at, letter.kind, key, letter.reason[:200])
        Console().print(table)
    for name, count in kinds.most_common():
        console.print(f"{name}: {count}")


@dead_letters.command("replay")
def dead_letters_replay(
    kind: KindOption = None,
    contains: ContainsOption = None,
    from_beginning: Annotated[
        bool, typer.Option(help="Replay every letter, not only those since the last replay.")
    ] = False,
) -> None:
    """Send dead letters back to the ingestion topic (original key, value and headers) after a fix."""
    from pipeline.deadletters import DeadLetterReader, LetterFilter, replay_letters
    from pipeline.producer import EventProducer

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)

    async def run() -> int:
        store = _archive_store(settings, endpoints)
        letters_filter = LetterFilter(kind, contains)
        reader = DeadLetterReader(
            endpoints.kafka_bootstrap,
            settings.topic("ingestion-deadletter"),
            f"{settings.consumer_group}-deadletter-replay-{letters_filter.name}",
            from_beginning,
        )
        try:
            async with reader, EventProducer(endpoints.kafka_bootstrap, settings.topic("ingestion")) as producer:
                with _progress("replaying dead letters") as progress:
                    task = progress.add_task("replay", total=None)
                    return await replay_letters(
                        reader, producer, store, letters_filter, lambda _: progress.advance(task)
                    )
        finally:
            await store.close()

    count = asyncio.run(run())
    console.print(f"replayed {count} dead letters to {settings.topic('ingestion')}")


def _archive_store(settings: Settings, endpoints: Any) -> Any:
    from pipeline.stores.objects import open_store

    return open_store(
        endpoints.archive_url,
        endpoints.s3_endpoint,
        endpoints.s3_access_key,
        endpoints.s3_secret_key,
        settings.s3_region,
    )


def _exclusive_clickhouse(settings: Settings, role: str) -> Any:
    """ClickHouse for a command that writes: with embedded chDB, only while no worker holds the folder."""
    from pipeline.stores.clickhouse import ChdbBusy, connect

    try:
        return connect(settings.clickhouse_url or f"chdb://{settings.chdb_path}", role)
    except ChdbBusy as exc:
        fail(f"{exc}; stop the worker first (embedded chDB allows one process), or use a ClickHouse server")


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    """Run SQL on the configured ClickHouse; with chDB held by a worker, ask that worker (read-only)."""
    from pipeline.runtime.query import ask_worker
    from pipeline.stores.clickhouse import ChdbBusy, chdb_folder, connect

    url = settings.clickhouse_url or f"chdb://{settings.chdb_path}"
    try:
        client = connect(url, "query")
    except ChdbBusy:
        folder = chdb_folder(url)
        assert folder is not None  # only a chDB folder can be busy
        return ask_worker(folder, sql)
    result = client.query(sql)
    return list(result.column_names), [list(row) for row in result.result_rows]


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run.")],
    output: Annotated[str, typer.Option("--format", help="table or json (one object per line).")] = "table",
) -> None:
    """Query ClickHouse: the embedded chDB folder, or (read-only, SELECT only) the worker that holds it."""
    try:
        columns, rows = run_query(settings_from_env(), sql)
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


@app.command()
def demo(
    recording: Annotated[Path, typer.Option(help="Recording to replay.", exists=True)] = SAMPLE_RECORDING,
) -> None:
    """Stack up, topics, migrations, replay the bundled recording through a worker, print a summary."""
    from pipeline.producer import file_records
    from pipeline.stack.local import stack_up

    settings = settings_from_env()
    with console.status("starting the local stack (first run resolves Kafka jars with Maven)"):
        stack_up(settings.stack_dir)
    endpoints = endpoints_or_fail(settings)
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
        fail(f"`lfpipe {' '.join(args)}` failed with exit code {result.returncode}")


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
