"""The durability order of one batch, in one place.

``Checkpoint.commit`` takes a processed batch through these steps, each waiting for the one before:

1. media objects, before the rows whose media tokens point at them;
2. the archive object and the ClickHouse rows with their merge clocks (independent, so concurrently);
3. trace deletions, after the batch's rows (events of a deleted trace in the same batch go too);
4. dead letters: what validation rejected and what a store refused;
5. the offsets, only now (and only if the batch's partitions are still ours);
6. durable: its events count as seen; entities a store refused, and deleted traces, leave memory.

A crash anywhere before step 5 leaves the batch uncommitted, so it is read again and written again; every step
is idempotent. A store that is down is retried (backpressure) by the one retry policy; a store that refuses
entities takes them out of the batch, and their messages become dead letters (``rejected_by_store``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from pipeline.runtime.batch import BatchOutput, EntityKey, refuse
from pipeline.runtime.retry import Health, retried
from pipeline.sinks.archive import ArchiveSink
from pipeline.sinks.base import Refused, Sink
from pipeline.sources.kafka import Batch

Commit = Callable[[Batch], Awaitable[bool]]
MarkDurable = Callable[[BatchOutput, Collection[EntityKey]], Awaitable[None]]


@dataclass
class Sinks:
    media: Sink
    archive: ArchiveSink
    rows: Sink
    deletions: Sink
    dead_letters: Sink


@dataclass
class CheckpointResult:
    committed: bool
    refused: Refused = field(default_factory=dict)
    deleted_traces: int = 0

    @property
    def changes_memory(self) -> bool:
        """Entities left memory: a batch processed ahead of this one may have merged into them, so it must be
        processed again."""
        return bool(self.refused or self.deleted_traces)


class Checkpoint:
    def __init__(
        self,
        sinks: Sinks,
        commit: Commit,
        mark_durable: MarkDurable,
        retry_max_seconds: float,
        health: Health,
        timings: Counter[str] | None = None,
    ) -> None:
        self.sinks = sinks
        self._commit = commit
        self._mark_durable = mark_durable
        self.retry_max_seconds = retry_max_seconds
        self.health = health
        self.timings = timings if timings is not None else Counter()  # seconds spent per step, for the summary

    async def commit(self, batch: Batch, out: BatchOutput) -> CheckpointResult:
        sinks = self.sinks
        # 1. Media objects first.
        refused = await self._write(sinks.media, out)
        if refused:
            refuse(out, refused)
        # 2. Archive and rows together.
        archived = list(out.archived)
        _, row_refusals = await asyncio.gather(self._write(sinks.archive, out), self._write(sinks.rows, out))
        if row_refusals:
            refuse(out, row_refusals)
            refused |= row_refusals
            await self._retried(sinks.archive.name, lambda: sinks.archive.replace(archived, out))
        # 3. Deletions after the rows.
        await self._write(sinks.deletions, out)
        # 4. Dead letters.
        await self._write(sinks.dead_letters, out)
        # 5. Offsets.
        committed = await self._retried("kafka-commit", lambda: self._commit(batch))
        # 6. Durable.
        await self._mark_durable(out, refused.keys())
        return CheckpointResult(committed, refused, len(out.deletions))

    async def _write(self, sink: Sink, out: BatchOutput) -> Refused:
        return await self._retried(sink.name, lambda: sink.write(out))

    async def _retried(self, what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        try:
            return await retried(what, attempt, self.retry_max_seconds, self.health)
        finally:
            self.timings[what] += time.perf_counter() - started
