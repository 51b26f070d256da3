"""The worker: a Faust agent that runs each batch through the processor and makes it durable.

Durability order for every batch: media objects -> archive object and ClickHouse rows (concurrently) ->
trace deletions -> dead letters -> ack.
Faust commits only acked offsets, so a crash at any point leaves the batch uncommitted and it is consumed again; the
merge is order-independent and idempotent, so the second pass writes the same rows. A failing sink is
retried with back-off until it recovers (backpressure: nothing more is fetched meanwhile).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from prometheus_client import generate_latest

from pipeline import metrics
from pipeline.config import Settings
from pipeline.endpoints import resolve
from pipeline.processor import BatchOutput, DeadLetter, Processor, media_key
from pipeline.recordfile import Record
from pipeline.sinks.archive import ArchiveSink, open_store
from pipeline.sinks.clickhouse import ClickHouseSink, connect
from pipeline.sinks.deletion import delete_trace
from pipeline.sinks.migrations import require_migrated
from pipeline.sources.config_feed import ConfigFeed
from pipeline.sources.kafka import ingestion_topic, make_app, to_record
from pipeline.sources.lag import OffsetReader, consumer_lag
from pipeline.stack.processes import free_port
from pipeline.transforms import tokenize
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.media import Limits as MediaLimits

log = logging.getLogger("lfpipe.worker")
DEAD_LETTER_INLINE_BYTES = 1_000_000
LATENCY_SAMPLES = 200_000


@dataclass
class RunStats:
    counts: Counter[str] = field(default_factory=Counter)
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    last_event_at: float = field(default_factory=time.monotonic)
    busy: bool = False
    exiting: bool = False
    assigned: set[int] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    tokenizer_seconds: float = 0.0
    # End-to-end latencies (message timestamp to durable), a uniform sample of at most LATENCY_SAMPLES.
    latencies: list[float] = field(default_factory=list)
    latency_count: int = 0

    def observe_latencies(self, records: list[Record], durable_ms: float) -> None:
        for record in records:
            seconds = max(0.0, (durable_ms - record.timestamp_ms) / 1000)
            metrics.END_TO_END_SECONDS.observe(seconds)
            self.latency_count += 1
            if len(self.latencies) < LATENCY_SAMPLES:
                self.latencies.append(seconds)
            elif (slot := random.randrange(self.latency_count)) < LATENCY_SAMPLES:
                self.latencies[slot] = seconds

    def summary(self) -> dict[str, Any]:
        elapsed = (self.last_batch_at or 0) - (self.first_batch_at or 0)
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4) if ordered else None

        return {
            **self.counts,
            "seconds": round(elapsed, 3),
            "events_per_second": round(self.counts["consumed"] / elapsed, 1) if elapsed > 0 else None,
            "latency_p50_seconds": percentile(0.50),
            "latency_p99_seconds": percentile(0.99),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


async def retry_until_done(
    what: str, attempt: Callable[[], Awaitable[Any]], max_delay: float, failing: set[str]
) -> Any:
    """Backpressure: the batch waits here (nothing more is fetched) until ``what`` works again; ``failing``
    names the sinks being retried, for /readyz."""
    delay = 0.2
    while True:
        try:
            result = await attempt()
            failing.discard(what)
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failing.add(what)
            metrics.SINK_ERRORS.labels(what).inc()
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    record = letter.record
    return [
        *record.headers,
        ("lfpipe.reason", letter.reason.encode()[:4096]),
        ("lfpipe.reason-kind", letter.kind.encode()),
        ("lfpipe.topic", record.topic.encode()),
        ("lfpipe.partition", str(record.partition).encode()),
        ("lfpipe.offset", str(record.offset).encode()),
    ]


def build_worker(settings: Settings) -> faust.App:
    endpoints = resolve(settings)
    web_port = settings.worker_web_port or free_port()
    app = make_app(settings, endpoints.kafka_bootstrap, web_port)
    source = ingestion_topic(app, settings)
    dead_letter_topic = settings.topic("ingestion-deadletter")
    clickhouse = ClickHouseSink(
        connect(endpoints.clickhouse_url, "worker", web_port, wait_seconds=30), settings.retry_max_seconds
    )
    require_migrated(clickhouse.client)
    archive = ArchiveSink(
        open_store(
            endpoints.archive_url,
            endpoints.s3_endpoint,
            endpoints.s3_access_key,
            endpoints.s3_secret_key,
            settings.s3_region,
        )
    )
    catalog = Catalog.with_defaults()
    config_feed = ConfigFeed(endpoints.kafka_bootstrap, settings.topic("config"), catalog)
    catalog_ready = asyncio.Event()
    processor = Processor(
        catalog,
        settings.max_event_bytes,
        settings.state_max_entities,
        settings.dedup_max_ids,
        MediaLimits(settings.media_min_bytes, settings.media_max_bytes),
    )
    stats = RunStats()
    summary_path = settings.summary_file or settings.stack_dir / "worker-summary.json"

    async def write_clickhouse(out: BatchOutput) -> None:
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)

        def insert() -> int:
            # Rows before clocks: after a crash between the two, stored clocks are never newer than the
            # stored row, so re-applying the redelivered events restores both (the reverse order would
            # let a newer clock shadow a value the row never got).
            written = sum(clickhouse.insert_rows(table, rows) for table, rows in out.rows.items())
            return written + clickhouse.insert_clocks(out.clocks, now_ms)

        written_bytes = await clickhouse.run(insert)
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        metrics.INSERT_BYTES.inc(written_bytes)
        for table, rows in out.rows.items():
            metrics.ROWS_WRITTEN.labels(table).inc(len(rows))

    async def write_archive(out: BatchOutput) -> None:
        started = time.perf_counter()
        _, size = await archive.write_batch(out.archived)
        metrics.ARCHIVE_SECONDS.observe(time.perf_counter() - started)
        metrics.ARCHIVE_OBJECTS.inc()
        metrics.ARCHIVE_BYTES.inc(size)

    async def send_dead_letters(out: BatchOutput) -> None:
        pending = []
        for letter in out.dead_letters:
            value, headers = letter.record.value, dead_letter_headers(letter)
            if len(value) > DEAD_LETTER_INLINE_BYTES:
                # Too big for a Kafka message: the whole payload goes to object storage, the topic gets its
                # head and where to find the rest.
                key = f"dead-letters/{hashlib.sha256(value).hexdigest()}.bin"
                await archive.store.put(key, value)
                headers.append(("lfpipe.payload-object", key.encode()))
                value = value[:DEAD_LETTER_INLINE_BYTES]
            pending.append(await app.producer.send(dead_letter_topic, letter.record.key, value, None, None, headers))
        await asyncio.gather(*pending)

    async def write_media(out: BatchOutput) -> None:
        # Always written, never remembered as written: a trace deletion (on any worker) may have removed the
        # object since, and content-addressed keys make the write idempotent.
        for (project_id, _), media in out.media.items():
            started = time.perf_counter()
            await archive.store.put(media_key(project_id, media), media.content)
            metrics.MEDIA_OBJECTS.inc()
            metrics.MEDIA_BYTES.inc(len(media.content))
            metrics.MEDIA_SECONDS.observe(time.perf_counter() - started)

    async def apply_deletions(out: BatchOutput) -> None:
        for deletion in out.deletions:
            report = await delete_trace(deletion, clickhouse, archive.store, int(time.time() * 1000))
            await clickhouse.run(processor.forget_trace, deletion)
            metrics.TRACES_DELETED.inc()
            log.info("deleted trace %s of project %s: %s", deletion.trace_id, deletion.project_id, report)

    async def make_durable(out: BatchOutput) -> None:
        limit = settings.retry_max_seconds
        if out.media:
            # Objects before the rows whose tokens point at them.
            await retry_until_done("media", lambda: write_media(out), limit, stats.failing)
        # The archive and ClickHouse are independent and both must succeed before the ack, so they overlap.
        writes = []
        if out.archived:
            writes.append(retry_until_done("archive", lambda: write_archive(out), limit, stats.failing))
        if out.rows:
            writes.append(retry_until_done("clickhouse", lambda: write_clickhouse(out), limit, stats.failing))
        await asyncio.gather(*writes)
        if out.deletions:
            # After the batch's rows, so events of the deleted trace in the same batch go too.
            await retry_until_done("deletion", lambda: apply_deletions(out), limit, stats.failing)
        if out.dead_letters:
            await retry_until_done("dead-letter topic", lambda: send_dead_letters(out), limit, stats.failing)

    @app.task
    async def warm_up() -> None:
        # One-time costs (pandas import inside clickhouse-connect, tokenizer tables) paid at start, not by
        # the first batches' latency.
        await clickhouse.run(warm_up_libraries)

    @app.task
    async def read_config() -> None:
        try:
            await config_feed.start()
        except Exception as exc:
            log.critical("cannot read the config topic: %s", exc)
            await app.crash(exc)
            return
        catalog_ready.set()

    @app.agent(source, concurrency=1)
    async def ingest(stream: faust.StreamT) -> None:
        # Models and score configs first: a batch priced with a half-read catalog would be wrong.
        await catalog_ready.wait()
        try:
            async for events in stream.noack_take(settings.batch_max_events, within=settings.batch_max_seconds):
                stats.busy = True
                stats.first_batch_at = stats.first_batch_at or time.monotonic()
                records = [to_record(event) for event in events]
                now_ms = int(time.time() * 1000)
                started = time.perf_counter()
                out = await clickhouse.run(processor.process, records, clickhouse.read_states_patiently, now_ms)
                metrics.PROCESS_SECONDS.observe(time.perf_counter() - started)
                await make_durable(out)
                processor.mark_durable(out)
                for event in events:
                    await stream.ack(event)
                stats.observe_latencies(records, time.time() * 1000)
                _count(out)
                stats.busy = False
                stats.last_event_at = stats.last_batch_at = time.monotonic()
        except Exception as exc:
            # Per-message failures are dead letters; reaching here is a bug or a broken environment. Crash the
            # worker (non-zero exit) rather than let Faust restart an agent whose fetched events are lost to it.
            log.critical("batch processing failed; stopping the worker", exc_info=True)
            await app.crash(exc)
        finally:
            clickhouse.stopping.set()
            summary_path.write_bytes(orjson.dumps(stats.summary()))
            await archive.store.close()
            await config_feed.stop()

    def _count(out: BatchOutput) -> None:
        stats.counts.update(out.counts)
        metrics.MEDIA_KEPT_INLINE.inc(out.media_kept_inline)
        for outcome in ("consumed", "processed", "deduplicated", "dead_lettered", "sdk_log"):
            metrics.EVENTS.labels(outcome).inc(out.counts[outcome])
        for letter in out.dead_letters:
            metrics.DEAD_LETTERS.labels(letter.event_type, letter.kind).inc()
        metrics.BATCH_SIZE.observe(out.counts["consumed"])
        metrics.STATE_ENTITIES.set(len(processor.states))
        metrics.DEDUP_IDS.set(len(processor.seen))
        misses = sum(
            1
            for row in out.rows.get("observations", ())
            if row.get("provided_model_name") and not row.get("internal_model_id") and not row.get("is_deleted")
        )
        metrics.MODEL_MATCH_MISSES.inc(misses)
        spent = tokenize.seconds_spent
        metrics.TOKENIZER_SECONDS.inc(spent - stats.tokenizer_seconds)
        stats.tokenizer_seconds = spent

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: Any, **_: Any) -> None:
        # Another worker may now change these entities; re-read them from ClickHouse when they return.
        if revoked:
            await clickhouse.run(processor.forget)  # on the thread that runs batches, never mid-batch

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **_: Any) -> None:
        stats.assigned = {tp.partition for tp in assigned if tp.topic == source.get_topic_name()}
        metrics.ASSIGNED_PARTITIONS.set(len(stats.assigned))
        metrics.CONSUMER_LAG.clear()

    @app.timer(5.0)
    async def sample_lag() -> None:
        if not stats.assigned:
            return
        try:
            async with OffsetReader(endpoints.kafka_bootstrap) as reader:
                lags = await reader.lag_by_partition(settings.consumer_group, source.get_topic_name())
        except Exception as exc:  # a metric, not worth more than a line while the broker is away
            log.debug("lag sample failed: %s", exc)
            return
        for tp, lag in lags.items():
            if tp.partition in stats.assigned:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(lag)

    if settings.exit_when_idle is not None:
        idle_seconds = settings.exit_when_idle

        @app.timer(1.0)
        async def exit_when_caught_up() -> None:
            consumer = app.consumer
            assigned = consumer.assignment()
            if stats.exiting or stats.busy or not assigned or time.monotonic() - stats.last_event_at < idle_seconds:
                return
            # Caught up means the group has committed (so made durable) everything in the topic; fetch
            # positions and the client's cached high-water marks run ahead of that or lag behind it.
            await consumer.commit()
            if await consumer_lag(endpoints.kafka_bootstrap, settings.consumer_group, source.get_topic_name()):
                return
            stats.exiting = True
            log.info("caught up and idle for %.1fs: exiting", idle_seconds)
            os.kill(os.getpid(), signal.SIGTERM)

    @app.page("/query")
    class QueryView(faust.web.View):
        """SQL in the POST body, JSON out: how ``lfpipe query`` reaches a chDB folder this worker holds."""

        async def post(self, request: faust.web.Request) -> faust.web.Response:
            sql = await request.text()
            try:
                result = await clickhouse.run(clickhouse.client.query, sql)
            except Exception as exc:
                return self.bytes(orjson.dumps({"error": str(exc)}), content_type="application/json", status=400)
            body = {"columns": list(result.column_names), "rows": [list(row) for row in result.result_rows]}
            return self.bytes(orjson.dumps(body, default=str), content_type="application/json")

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        """Alive: the event loop answers."""
        return web.json({"status": "ok", "pid": os.getpid()})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Ready: the catalog is read, partitions are assigned, and no sink is being retried."""
        problems = []
        if not catalog_ready.is_set():
            problems.append("reading the config topic")
        if not stats.assigned:
            problems.append("no partitions assigned")
        failing = stats.failing | ({"clickhouse-read"} if clickhouse.read_failing else set())
        problems += [f"{sink} is failing (retrying)" for sink in sorted(failing)]
        body = {"ready": not problems, "problems": problems, "partitions": sorted(stats.assigned)}
        return web.json(body, status=503 if problems else 200)

    return app


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
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
