"""The ingestion topic as whole batches: an aiokafka consumer in the workers' group, read with ``getmany``.

Faust's per-event stream costs about 150 us of CPU per event before any of our work (``BENCHMARKS.md``);
``getmany`` hands over thousands of messages per call for a few microseconds each. Offsets are committed
explicitly, only for batches the runtime has made durable, and only while the partitions they came from are
still ours: every rebalance starts a new *generation*, and a batch of an older generation is never committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from pipeline.recordfile import Record

log = logging.getLogger("lfpipe.source")
IDLE_POLL_SECONDS = 0.5
RevokeHook = Callable[[set[TopicPartition]], Awaitable[None]]
OnFetched = Callable[[list[Record]], None]


def _ignore(_: list[Record]) -> None:
    return None


@dataclass
class Batch:
    records: list[Record]
    offsets: dict[TopicPartition, int]  # per partition, the offset to commit (last offset + 1)
    generation: int
    first_at: float = field(default_factory=time.monotonic)


def as_record(message: ConsumerRecord[bytes, bytes]) -> Record:
    """An aiokafka message as the pipeline's record (the archive keeps exactly this)."""
    headers: tuple[tuple[str, bytes], ...] = ()
    if message.headers:  # most messages have none; a header without a value becomes empty bytes
        headers = tuple((name, value or b"") for name, value in message.headers)
    return Record(
        message.value or b"", message.key, message.timestamp, message.topic, message.partition, message.offset, headers
    )


async def _nothing(_: set[TopicPartition]) -> None:
    return None


class BatchSource(ConsumerRebalanceListener):
    """Batches of the ingestion topic for one member of the consumer group."""

    def __init__(self, bootstrap: str, topic: str, group: str, max_events: int, session_timeout_seconds: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.max_events = max_events
        self.session_timeout_seconds = session_timeout_seconds
        self.on_revoke: RevokeHook = _nothing
        self.consumer: AIOKafkaConsumer
        self.generation = 0
        self.revoking = False  # partitions are about to move: nothing new is handed over
        self.assigned: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.last_record_at = time.monotonic()

    async def start(self, on_revoke: RevokeHook) -> None:
        """Join the group; ``on_revoke`` runs before partitions move away."""
        self.on_revoke = on_revoke
        self.consumer = make_consumer(self.bootstrap, self.group, self.max_events, self.session_timeout_seconds)
        self.consumer.subscribe([self.topic], listener=self)
        await self.consumer.start()

    async def stop(self) -> None:
        """Leave the group at once (no commit: whatever was durable is committed already)."""
        await self.consumer.stop()

    async def next_batch(
        self, max_events: int, max_bytes: int, window_seconds: float, on_fetched: OnFetched = _ignore
    ) -> Batch | None:
        """Messages until ``max_events`` or ``max_bytes`` (values, keys and headers), or until ``window_seconds``
        after the first one was produced (its timestamp; a message that waited behind a slow batch closes the next
        one at once); ``on_fetched`` sees each fetch's messages as they arrive, in order;
        ``None`` when nothing arrives for a short while (so the caller can look at its other duties). A batch
        that straddles a rebalance is dropped: its records are read again from the committed offsets."""
        records: list[Record] = []
        size = 0
        generation = self.generation
        deadline: float | None = None
        while len(records) < max_events and size < max_bytes:
            # Past the deadline, only what is already fetched is taken (without waiting).
            wait = IDLE_POLL_SECONDS if deadline is None else max(0.0, deadline - time.time())
            fetched = await self.consumer.getmany(timeout_ms=int(wait * 1000), max_records=max_events - len(records))
            if self.generation != generation:
                await self.rewind([*records, *(as_record(m) for messages in fetched.values() for m in messages)])
                return None
            if not fetched:
                if deadline is None:
                    return None
                if wait == 0:
                    break
                continue
            chunk = [as_record(message) for messages in fetched.values() for message in messages]
            for record in chunk:
                size += len(record.value) + len(record.key or b"")
                if record.headers:
                    size += sum(len(value) for _, value in record.headers)
            records.extend(chunk)
            on_fetched(chunk)
            if deadline is None:
                # A producer clock ahead of ours must not stretch the window.
                produced = min(record.timestamp_ms for record in records) / 1000
                deadline = min(produced, time.time()) + window_seconds
        self.last_record_at = time.monotonic()
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        return Batch(records, offsets, generation)

    async def rewind(self, records: list[Record]) -> None:
        """Records that were fetched but will not be processed: fetch them again where their partitions are
        still (or again) ours. Positions only move back, so nothing is ever skipped; where a rebalance already
        reset a position to the committed offset, that position is not after them and stays."""
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        assigned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned and offset < await self.consumer.position(tp):
                self.consumer.seek(tp, offset)

    def is_current(self, batch: Batch) -> bool:
        """Whether the batch may still be handed over: fetched in this generation, and no rebalance under way."""
        return batch.generation == self.generation and not self.revoking

    async def commit(self, batch: Batch) -> bool:
        """Commit the batch's offsets; False when its partitions changed hands since it was fetched (the new
        owner reads it again). Connection errors are raised for the caller's retry policy."""
        if batch.generation != self.generation:
            return False
        try:
            await self.consumer.commit(batch.offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            log.info("batch not committed, its partitions moved: %s", exc)
            return False
        self.committed.update(batch.offsets)
        log.debug("committed %s", {tp.partition: offset for tp, offset in batch.offsets.items()})
        return True

    def lag(self) -> dict[int, int]:
        """Per assigned partition, messages not committed yet (from the last fetch's high-water marks)."""
        lags = {}
        for tp in self.assigned:
            highwater = self.consumer.highwater(tp)
            if highwater is not None and tp in self.committed:
                lags[tp.partition] = max(0, highwater - self.committed[tp])
        return lags

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Called before every reassignment: the last chance to commit what is durable. After it, batches fetched
        # before are stale; aiokafka then starts the new assignment from the committed offsets.
        self.revoking = True
        try:
            await self.on_revoke(set(revoked))
        finally:
            self.generation += 1
            self.revoking = False
            self.assigned = set()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.committed = {}
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))

    async def read_committed(self) -> None:
        """The group's committed offsets of assigned partitions this worker has not committed itself yet."""
        for tp in list(self.assigned):
            if tp not in self.committed:
                position = await self.consumer.committed(tp)
                if position is not None and tp in self.assigned:
                    self.committed[tp] = position


def make_consumer(bootstrap: str, group: str, max_events: int, session_timeout_seconds: float) -> AIOKafkaConsumer:
    """The group member (made inside the running loop: aiokafka binds to it)."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_events,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        session_timeout_ms=int(session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(min(3.0, session_timeout_seconds / 5) * 1000),
        # While a sink is down nothing is fetched (backpressure); a ten-minute outage keeps the membership.
        max_poll_interval_ms=600_000,
    )
