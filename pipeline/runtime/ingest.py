"""The ingestion loop: fetch a batch, process it, hand it to the durable agent, one batch ahead.

While batch N is being made durable (its checkpoint runs in the Faust agent), batch N+1 is fetched and
processed, and waits: at most one batch is ahead, so memory and redelivery stay bounded, and checkpoints (and
so commits) run strictly in order. Each fetch's messages are validated while the next fetch is awaited, so a
batch that closes has only its last fetch left to validate. If N's checkpoint took entities out of memory (a
store refused them, or a trace was deleted), N+1 is processed again before it is handed over. A batch whose
partitions changed hands meanwhile is dropped; its messages are read again from the committed offsets.

Processing runs on one thread of its own, so the event loop stays free for Kafka, object storage and the web
endpoints; every call into the processor goes through that thread, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import TopicPartition
from mode import Service

from pipeline import metrics
from pipeline.recordfile import Record
from pipeline.runtime.batch import BatchOutput, EntityKey
from pipeline.runtime.checkpoint import CheckpointResult
from pipeline.runtime.prefetch import Prefetch
from pipeline.runtime.processor import Prepared, Processor
from pipeline.runtime.stats import RunStats
from pipeline.sources.kafka import Batch, BatchSource
from pipeline.sources.stored_state import StoredStateReader

log = logging.getLogger("lfpipe.ingest")
T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_events: int
    max_bytes: int
    window_seconds: float
    drain_seconds: float  # how long a stopping worker or a revoked partition waits for the batch in flight


@dataclass
class Handed:
    """A processed batch given to the durable agent; ``done`` resolves when its checkpoint has finished."""

    batch: Batch
    out: BatchOutput
    done: asyncio.Future[CheckpointResult]


HandOver = Callable[[Handed], Awaitable[None]]


class Ingestion(Service):
    def __init__(
        self,
        source: BatchSource,
        processor: Processor,
        reader: StoredStateReader,
        hand_over: HandOver,
        limits: BatchLimits,
        ready: asyncio.Event,
        stats: RunStats,
        crash: Callable[[BaseException], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.processor = processor
        self.reader = reader
        self.hand_over = hand_over
        self.limits = limits
        self.ready = ready  # set once models and score configs are read
        self.stats = stats
        self.crash_worker = crash
        self.on_stopped: Callable[[], Awaitable[None]] | None = None
        self.in_flight: Handed | None = None
        self.busy = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processor")
        self._loop_task: asyncio.Task[None] | None = None

    async def in_processor(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def on_start(self) -> None:
        await self.source.start(self.on_revoke)
        self._loop_task = asyncio.create_task(self._run())
        self._loop_task.add_done_callback(self._on_loop_done)

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Per-message failures are dead letters; reaching here is a bug or a broken environment. Crash the
            # worker (non-zero exit): the batches that were not committed are read again after a restart.
            log.critical("the ingestion loop failed; stopping the worker", exc_info=task.exception())
            self._crashing = asyncio.ensure_future(self.crash_worker(task.exception()))  # type: ignore[arg-type]

    async def _run(self) -> None:
        await self.ready.wait()
        while not self.should_stop:
            fetched = await self._fetch_and_prepare()
            if fetched is None:
                continue
            batch, prepared, prefetch = fetched
            self.busy = True
            self.stats.batch_started()
            out = await self.complete(prepared, prefetch)
            if self.in_flight is not None:
                waited_at = time.perf_counter()
                result = await asyncio.shield(self.in_flight.done)  # a stopping worker must not cancel it
                self.stats.stage_seconds["waiting for the batch ahead"] += time.perf_counter() - waited_at
                if result.changes_memory and self.source.is_current(batch):
                    await self.in_processor(self.processor.discard, out)
                    out = await self.process(batch)
            if not self.source.is_current(batch) or self.should_stop:
                await self.in_processor(self.processor.discard, out)
                await self.source.rewind(batch.records)
                self.busy = False
                continue
            self.in_flight = Handed(batch, out, asyncio.get_running_loop().create_future())
            await self.hand_over(self.in_flight)
            self.busy = False

    async def _fetch_and_prepare(self) -> tuple[Batch, Prepared, Prefetch] | None:
        """The next batch, prepared (validate, dedup, extract) on the processor thread while the rest of it is
        still being fetched, and the entities memory does not hold read meanwhile (``prefetch.py``): closing
        the batch leaves only its last fetch to prepare and read."""
        prepared = self.processor.begin(int(time.time() * 1000))
        prefetch = Prefetch(self.reader)
        chunks: list[asyncio.Future[tuple[float, list[EntityKey]]]] = []

        def prepare(records: list[Record]) -> tuple[float, list[EntityKey]]:
            started = time.perf_counter()
            missing = self.processor.prepare_more(prepared, records)
            return time.perf_counter() - started, missing

        def read_early(chunk: asyncio.Future[tuple[float, list[EntityKey]]]) -> None:
            if not chunk.cancelled() and chunk.exception() is None:
                prefetch.want(chunk.result()[1])

        def fetched(records: list[Record]) -> None:
            chunks.append(asyncio.get_running_loop().run_in_executor(self._thread, prepare, records))
            chunks[-1].add_done_callback(read_early)

        batch = await self.source.next_batch(
            self.limits.max_events, self.limits.max_bytes, self.limits.window_seconds, fetched
        )
        done = await asyncio.gather(*chunks)
        self.stats.stage_seconds["prepare"] += sum(seconds for seconds, _ in done)  # a dropped batch's too
        if batch is None or not batch.records:
            await prefetch.cancel()
            return None
        return batch, await self.in_processor(self.processor.finish, prepared), prefetch

    async def process(self, batch: Batch) -> BatchOutput:
        """Validate, dedup and extract; read the entities memory does not hold; merge and build rows."""
        started = time.perf_counter()
        prepared = await self.in_processor(self.processor.prepare, batch.records, int(time.time() * 1000))
        self.stats.stage_seconds["prepare"] += time.perf_counter() - started
        return await self.complete(prepared, Prefetch(self.reader))

    async def complete(self, prepared: Prepared, prefetch: Prefetch) -> BatchOutput:
        """Read the entities memory does not hold (what the prefetch has not read yet); merge and build rows."""
        timings = self.stats.stage_seconds
        started = time.perf_counter()
        stored = await prefetch.rest(prepared.missing)
        merge_at = time.perf_counter()
        out = await self.in_processor(self.processor.complete, prepared, stored)
        done_at = time.perf_counter()
        timings["stored-state read"] += merge_at - started
        timings["merge and rows"] += done_at - merge_at
        metrics.PROCESS_SECONDS.observe(done_at - started)
        return out

    async def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the batch in flight to be durable; whether it is."""
        handed = self.in_flight
        if handed is None or handed.done.done():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(handed.done), timeout)
        except TimeoutError:
            return False
        return True

    async def on_revoke(self, revoked: set[TopicPartition]) -> None:
        """Before the group moves partitions: commit what is durable in time, then forget every entity (another
        worker may change them now; they are read from ClickHouse when they come back)."""
        if not await self.settle(self.limits.drain_seconds):
            log.warning("the batch in flight was not durable in time; its partitions will read it again")
        await self.in_processor(self.processor.forget)
        metrics.CONSUMER_LAG.clear()

    async def on_stop(self) -> None:
        """SIGTERM: finish the batch in flight (bounded), then leave the group."""
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), self.limits.window_seconds + 1)
            except TimeoutError:
                self._loop_task.cancel()  # stuck behind a store that is down: nothing more will be handed over
            except Exception:
                pass  # reported by _on_loop_done
        if not await self.settle(self.limits.drain_seconds):
            log.warning("stopping with a batch that is not durable; it will be read again")
        await self.source.stop()
        self._thread.shutdown(wait=False, cancel_futures=True)
        if self.on_stopped is not None:
            await self.on_stopped()
