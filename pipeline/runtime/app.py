"""The worker: a Faust app that runs the batch pipeline.

Faust is the runtime: the app and its lifecycle (start, SIGTERM, crash), the web server, timers, and the
agent that makes each batch durable. Batches do not come through Faust's per-event stream (about 150 us of
CPU per event): ``Ingestion`` reads them with aiokafka ``getmany`` as a member of the consumer group, and
hands each processed batch to the ``durable`` agent through an in-memory channel. The agent runs the
``Checkpoint`` (the durability order) and resolves the batch's future; offsets are committed there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.app.base import BootStrategy

from pipeline import metrics
from pipeline.config import Settings
from pipeline.endpoints import Endpoints, resolve
from pipeline.net import free_port
from pipeline.operations.lag import consumer_lag
from pipeline.runtime.checkpoint import Checkpoint, Sinks
from pipeline.runtime.ingest import BatchLimits, Handed, Ingestion
from pipeline.runtime.memory import tune_gc
from pipeline.runtime.processor import Processor
from pipeline.runtime.query import QueryServer
from pipeline.runtime.retry import Health
from pipeline.runtime.stats import RunStats
from pipeline.runtime.web import add_pages
from pipeline.schema.migrations import require_migrated
from pipeline.sinks.archive import ArchiveSink
from pipeline.sinks.clickhouse import RowsSink
from pipeline.sinks.dead_letters import DeadLetterSink
from pipeline.sinks.deletion import DeletionSink
from pipeline.sinks.media import MediaSink
from pipeline.sources.config_feed import ConfigFeed
from pipeline.sources.kafka import BatchSource
from pipeline.sources.stored_state import StoredStateReader, read_states
from pipeline.stores.clickhouse import ClickHouse, another_session, chdb_folder, connect
from pipeline.stores.objects import ObjectStore
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.media import Limits as MediaLimits

log = logging.getLogger("lfpipe.worker")
INSERT_LANES = 3  # ClickHouse sessions the inserts use: one per entity table
LAG_SAMPLE_SECONDS = 5.0


class WorkerBoot(BootStrategy):
    """No Faust consumer or producer: ingestion reads batches itself, and the dead-letter sink owns its
    producer. Faust starts the web server, timers and agents."""

    enable_kafka = False


@dataclass
class Worker:
    """Everything a running worker holds, for the web pages, the timers and shutdown."""

    settings: Settings
    endpoints: Endpoints
    app: faust.App
    clickhouse: ClickHouse
    store: ObjectStore
    config_feed: ConfigFeed
    dead_letters: DeadLetterSink
    source: BatchSource
    ingestion: Ingestion
    health: Health
    stats: RunStats
    query_server: QueryServer | None = None
    insert_lanes: list[ClickHouse] = field(default_factory=list)  # sessions beside ``clickhouse`` for inserts
    exiting: bool = False


def make_app(settings: Settings, web_port: int) -> faust.App:
    app = faust.App(
        settings.consumer_group,
        store="memory://",
        datadir=str((settings.stack_dir / "faust").resolve()),
        web_enabled=True,
        web_bind=settings.worker_web_bind,
        web_host=settings.worker_web_bind,
        web_port=web_port,
        web_in_thread=False,
    )
    app.boot_strategy = WorkerBoot(app)
    return app


def build_worker(settings: Settings) -> faust.App:
    endpoints = resolve(settings)
    web_port = settings.worker_web_port or free_port()
    app = make_app(settings, web_port)
    clickhouse = ClickHouse(connect(endpoints.clickhouse_url, "worker", web_port, wait_seconds=30))
    require_migrated(clickhouse.client)
    store = endpoints.archive()
    catalog = Catalog.with_defaults()
    processor = Processor(
        catalog,
        settings.max_event_bytes,
        settings.state_max_entities,
        settings.dedup_max_ids,
        MediaLimits(settings.media_min_bytes, settings.media_max_bytes),
        check_keys=True,
    )
    health, stats = Health(), RunStats()
    source = BatchSource(
        endpoints.kafka_bootstrap,
        settings.topic("ingestion"),
        settings.consumer_group,
        settings.batch_max_events,
        settings.session_timeout_seconds,
    )
    channel = app.channel(maxsize=1)
    worker = Worker(
        settings,
        endpoints,
        app,
        clickhouse,
        store,
        ConfigFeed(endpoints.kafka_bootstrap, settings.topic("config"), catalog.apply),
        DeadLetterSink(endpoints.kafka_bootstrap, settings.topic("ingestion-deadletter"), store),
        source,
        make_ingestion(settings, endpoints, app, source, processor, channel, health, stats),
        health,
        stats,
    )
    folder = chdb_folder(endpoints.clickhouse_url)
    if folder is not None:
        worker.query_server = QueryServer(clickhouse, folder)
    add_agent(worker, channel, make_checkpoint(worker, processor))
    add_tasks(worker)
    add_pages(app, worker)
    worker.ingestion.on_stopped = lambda: close(worker)
    app.service(worker.ingestion)
    return app


def make_ingestion(
    settings: Settings,
    endpoints: Endpoints,
    app: faust.App,
    source: BatchSource,
    processor: Processor,
    channel: Any,
    health: Health,
    stats: RunStats,
) -> Ingestion:
    async def hand_over(handed: Handed) -> None:
        await channel.send(value=handed)

    limits = BatchLimits(
        settings.batch_max_events, settings.batch_max_bytes, settings.batch_max_seconds, settings.drain_seconds
    )
    # Reads of stored state have a session and a thread of their own: they never wait behind the inserts of the
    # batch before (the entities that batch writes are in memory, never read back).
    reading = ClickHouse(another_session(endpoints.clickhouse_url))
    reader = StoredStateReader(reading, settings.retry_max_seconds, health)
    return Ingestion(source, processor, reader, hand_over, limits, asyncio.Event(), stats, app.crash)


def make_checkpoint(worker: Worker, processor: Processor) -> Checkpoint:
    clickhouse, store = worker.clickhouse, worker.store
    worker.insert_lanes = [
        ClickHouse(another_session(worker.endpoints.clickhouse_url)) for _ in range(INSERT_LANES - 1)
    ]
    rows = RowsSink(clickhouse, worker.insert_lanes)
    sinks = Sinks(MediaSink(store), ArchiveSink(store), rows, DeletionSink(clickhouse, store), worker.dead_letters)

    async def mark_durable(out: Any, refused: Any) -> None:
        await worker.ingestion.in_processor(processor.mark_durable, out, refused)
        metrics.STATE_ENTITIES.set(len(processor.states))
        metrics.DEDUP_IDS.set(len(processor.seen))

    settings, stats = worker.settings, worker.stats
    return Checkpoint(
        sinks, worker.source.commit, mark_durable, settings.retry_max_seconds, worker.health, stats.stage_seconds
    )


def add_agent(worker: Worker, channel: Any, checkpoint: Checkpoint) -> None:
    @worker.app.agent(channel, concurrency=1)
    async def durable(stream: faust.StreamT) -> None:
        """Each processed batch through its checkpoint, strictly in the order handed over."""
        async for handed in stream:
            try:
                result = await checkpoint.commit(handed.batch, handed.out)
            except Exception as exc:
                if not handed.done.done():
                    handed.done.set_exception(exc)
                continue
            worker.stats.batch_durable(handed.batch.records, handed.out, time.time() * 1000)
            if not handed.done.done():
                handed.done.set_result(result)


def add_tasks(worker: Worker) -> None:
    app, settings = worker.app, worker.settings

    @app.task
    async def prepare() -> None:
        # Channels wait for Faust's consumer to resume flow; there is none, so it is resumed here.
        app.flow_control.resume()
        # One-time costs (pandas inside clickhouse-connect, tokenizer tables) paid at start, not by the first
        # batches' latency; models and score configs before the first batch (a half-read catalog misprices).
        await worker.clickhouse.run(warm_up_libraries)
        tune_gc()
        try:
            await warm_up_stores(worker)
            if worker.query_server is not None:
                await worker.query_server.start()
            await worker.dead_letters.start()
            await worker.config_feed.start()
        except Exception as exc:
            log.critical("cannot start: %s", exc)
            await app.crash(exc)
            return
        worker.ingestion.ready.set()

    @app.timer(LAG_SAMPLE_SECONDS)
    async def sample_lag() -> None:
        try:
            await worker.source.read_committed()
        except Exception as exc:  # a metric, not worth more than a line while the broker is away
            log.debug("reading committed offsets failed: %s", exc)
        metrics.ASSIGNED_PARTITIONS.set(len(worker.source.assigned))
        for partition, lag in worker.source.lag().items():
            metrics.CONSUMER_LAG.labels(str(partition)).set(lag)

    if settings.exit_when_idle is not None:

        @app.timer(1.0)
        async def exit_when_caught_up() -> None:
            await exit_if_idle(worker, settings.exit_when_idle or 0.0)


async def exit_if_idle(worker: Worker, idle_seconds: float) -> None:
    """Batch mode: once the group has committed (so made durable) everything in the topic, and nothing new has
    come for ``idle_seconds``, stop like a SIGTERM would."""
    source, ingestion = worker.source, worker.ingestion
    if worker.exiting or ingestion.busy or not source.assigned:
        return
    if time.monotonic() - source.last_record_at < idle_seconds or not await ingestion.settle(0):
        return
    settings = worker.settings
    if await consumer_lag(worker.endpoints.kafka_bootstrap, settings.consumer_group, settings.topic("ingestion")):
        return
    worker.exiting = True
    log.info("caught up and idle for %.1fs: exiting", idle_seconds)
    os.kill(os.getpid(), signal.SIGTERM)


async def close(worker: Worker) -> None:
    """After the last batch: release the clients and write the run summary."""
    summary_path = worker.settings.summary_file or worker.settings.stack_dir / "worker-summary.json"
    summary_path.write_bytes(orjson.dumps(worker.stats.summary()))
    steps = [worker.dead_letters.stop, worker.config_feed.stop, worker.store.close]
    if worker.query_server is not None:
        steps.append(worker.query_server.stop)
    for step in steps:
        try:
            await step()
        except Exception as exc:  # already stopping: a client that fails to close loses nothing
            log.debug("closing: %s", exc)
    for lane in worker.insert_lanes:
        await asyncio.to_thread(lane.close)
    await asyncio.to_thread(worker.clickhouse.close)
    await asyncio.to_thread(worker.ingestion.reader.clickhouse.close)


async def warm_up_stores(worker: Worker) -> None:
    """Connections and table metadata ready before the first batch, whose latency would pay for them."""
    async for _ in worker.store.list("raw/0000/"):
        break
    probe = [("trace", "", ""), ("observation", "", ""), ("score", "", "")]
    await worker.clickhouse.run(read_states, worker.clickhouse, probe)
    for table in ("traces", "observations", "scores", "media", "merge_clocks"):
        await worker.clickhouse.run(worker.clickhouse.columns, table)


def warm_up_libraries() -> None:
    import clickhouse_connect.driver.options as clickhouse_options

    from pipeline.transforms.tokenize import count_tokens

    clickhouse_options.__getattr__("pd")
    for model in ("gpt-4o", "gpt-4"):
        count_tokens({"id": "openai", "model": model}, "warm up")
    count_tokens({"id": "claude"}, "warm up")


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    # Until Faust installs its own handler, SIGTERM means nothing was consumed yet: leave cleanly (exit 0).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = build_worker(settings)
    faust_worker(app, loglevel).execute_from_commandline()


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG whenever the level is WARNING or above, so every
    # library's debug call would build a log record (about 5% of the worker's CPU); without it levels hold.
    worker.spinner = None
    return worker
