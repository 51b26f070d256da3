"""``lfpipe load``: generate, record and replay event streams; watch a run; the benchmarks."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.common import console, endpoints_or_fail, fail, iso_ms, progress_bar, settings_from_env
from pipeline.recordfile import Record

group = typer.Typer(help="Load testing: generate, record and replay streams; benchmark.", no_args_is_help=True)
TracesOption = Annotated[int, typer.Option(help="Traces in the generated stream (the benchmark's mix).")]
SeedOption = Annotated[int, typer.Option(help="Stream seed.")]


@group.command("generate")
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
    from load.generate import StreamShape, generate_stream, parse_mix
    from pipeline.recordfile import write_records

    try:
        weights = parse_mix(mix)
    except ValueError as exc:
        fail(str(exc))
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
    with progress_bar("generating") as progress, open(out, "wb") as handle:
        task = progress.add_task("generate", total=None)
        count = write_records(handle, _counted(generate_stream(shape), lambda: progress.advance(task)))
    console.print(f"wrote {count} messages to {out}")


def _counted(records: Iterator[Record], tick: Any) -> Iterator[Record]:
    for record in records:
        tick()
        yield record


@group.command("record")
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
    from load.record import Window, record_topic

    settings = settings_from_env()
    bootstrap = endpoints_or_fail(settings).kafka_bootstrap
    window = Window(from_offset, to_offset, iso_ms(from_time), iso_ms(to_time), seconds)
    with progress_bar("recording") as progress:
        task = progress.add_task("record", total=None)
        count = asyncio.run(
            record_topic(bootstrap, settings.topic(topic), out, window, lambda n: progress.advance(task, n))
        )
    console.print(f"recorded {count} messages into {out}")


@group.command("replay")
def load_replay(
    source: Annotated[str, typer.Argument(help="A recording (.lfr.zst) or an archive URL (s3://bucket/prefix).")],
    speed: Annotated[float | None, typer.Option(help="N times the recorded pace.")] = None,
    rate: Annotated[float | None, typer.Option(help="Fixed events per second.")] = None,
    rewrite: Annotated[str | None, typer.Option(help="Suffix for every id and project id.")] = None,
) -> None:
    """Produce a recording (or the raw archive) to the ingestion topic; as fast as possible by default."""
    from load.replay import Pace, replay_to_topic, source_records

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    try:
        pace = Pace(speed, rate)
        records = asyncio.run(source_records(source, endpoints))
        with progress_bar("replaying") as progress:
            task = progress.add_task("replay", total=len(records))
            count = asyncio.run(
                replay_to_topic(
                    endpoints, settings.topic("ingestion"), records, pace, rewrite, lambda n: progress.advance(task, n)
                )
            )
    except ValueError as exc:
        fail(str(exc))
    console.print(f"replayed {count} messages to {settings.topic('ingestion')}")


@group.command("report")
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
    from load.report import OffsetProbe, render_text, save_report
    from pipeline.runtime.query import query_clickhouse
    from pipeline.stores.clickhouse import read_owner

    settings = settings_from_env()
    endpoints = endpoints_or_fail(settings)
    ports = list(worker_port or [])
    if not ports and (owner := read_owner(settings.clickhouse_dsn)) and owner.get("web_port"):
        ports = [owner["web_port"]]
    folder = out or settings.stack_dir / "reports" / time.strftime("%Y%m%dT%H%M%S")
    groups = (settings.consumer_group, settings.topic("ingestion"), settings.topic("ingestion-deadletter"))
    probe = OffsetProbe(endpoints.kafka_bootstrap, *groups)
    samples, latency = asyncio.run(_watch(probe, ports, until_idle, max_seconds))
    tables = ("traces", "observations", "scores")
    _, counts = query_clickhouse(
        settings.clickhouse_dsn, "SELECT " + ", ".join(f"(SELECT count() FROM {t} FINAL)" for t in tables)
    )
    report = save_report(samples, latency, dict(zip(tables, counts[0], strict=True)), folder)
    if not ports:
        console.print("no worker web port known: latency percentiles are missing (pass --worker-port)")
    sys.stdout.write(render_text("run report", report.figures()) + "\n")
    console.print(f"report: {folder / 'report.json'}, chart: {folder / 'report.png'}")


async def _watch(probe: Any, ports: list[int], until_idle: float, max_seconds: float) -> Any:
    """``observe`` with a status line; says when it starts counting, so tools may start producing."""
    from load.report import observe

    async with probe:
        with console.status("waiting for events") as status:
            announced = False

            def show(point: Any) -> None:
                nonlocal announced
                if not announced:
                    console.print(f"watching {probe.topic} from {point.produced} messages, group {probe.group}")
                    announced = True
                status.update(
                    f"{point.at:.0f}s: {point.produced} in, {point.committed} committed, lag {point.lag}, "
                    f"{point.dead_letters} dead letters"
                )

            return await observe(probe, ports, until_idle, max_seconds, show)


@group.command("benchmark")
def load_benchmark(
    traces: Annotated[int, typer.Option(help="Traces in the generated stream.")] = 4000,
    seed: SeedOption = 11,
    latency_seconds: Annotated[float, typer.Option(help="Length of the half-load latency phase.")] = 30,
) -> None:
    """Pipeline vs raw-copy baseline on one generated stream: events/s, ratio, latency, RSS."""
    from load.benchmark import run_benchmark
    from load.report import render_text

    result = run_benchmark(settings_from_env(), traces, seed, latency_seconds, console.print)
    charts = result.pop("charts")
    sys.stdout.write(render_text("benchmark", result) + "\n")
    console.print("charts: " + ", ".join(charts))


@group.command("gateway")
def load_gateway(
    traces: TracesOption = 2000,
    seed: SeedOption = 11,
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


@group.command("stages")
def load_stages(traces: TracesOption = 4000, seed: SeedOption = 11) -> None:
    """The processor's stages alone on one core (no Kafka, ClickHouse or S3): time per event by stage."""
    from load.stages import render, run_stages

    with console.status("running the stages"):
        result = run_stages(traces, seed)
    sys.stdout.write(render(result) + "\n")
