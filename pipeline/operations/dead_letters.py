"""Dead letters for operators: read them with their reasons, and send them back to the ingestion topic after
a fix (a new model, a score config, a corrected producer), with the original key, value and headers.

A retried dead-letter send can write a letter twice; letters are told apart by the original partition and
offset they carry, so each is shown and replayed once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from pipeline.endpoints import Endpoints
from pipeline.operations.lag import OffsetReader
from pipeline.producer import EventProducer
from pipeline.recordfile import Record, decode_records
from pipeline.sinks.dead_letters import (
    HEADER_PREFIX,
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TOPIC,
    PAYLOAD_OBJECT,
    REASON,
    REASON_KIND,
)
from pipeline.stores.objects import ObjectStore


@dataclass(frozen=True)
class ParkedLetter:
    """A dead letter as read back from the dead-letter topic (``runtime.batch.DeadLetter`` is one to write)."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    letter_partition: int
    letter_offset: int

    def header(self, name: str) -> str:
        return next((value.decode(errors="replace") for key, value in self.headers if key == name), "")

    @property
    def reason(self) -> str:
        return self.header(REASON)

    @property
    def kind(self) -> str:
        return self.header(REASON_KIND) or "unknown"

    @property
    def origin(self) -> tuple[str, str, str]:
        """Where the original message was: topic, partition, offset."""
        return self.header(ORIGIN_TOPIC), self.header(ORIGIN_PARTITION), self.header(ORIGIN_OFFSET)

    @property
    def payload_object(self) -> str | None:
        """Object-storage key of the whole payload, for messages too large to keep in the topic."""
        return self.header(PAYLOAD_OBJECT) or None

    def summary(self) -> dict[str, Any]:
        """The letter as one JSON object (``lfpipe dead-letters list --format json``)."""
        topic, partition, offset = self.origin
        return {
            "timestamp_ms": self.timestamp_ms,
            "kind": self.kind,
            "reason": self.reason,
            "key": (self.key or b"").decode(errors="replace"),
            "origin": {"topic": topic, "partition": partition, "offset": offset},
            "payload_object": self.payload_object,
        }

    def original(self, payload: bytes | None = None) -> Record:
        """The message as it was produced: lfpipe's headers removed, and with ``payload`` (the letter's object in
        object storage) whatever was spilled restored: a record file holds key, value and headers; older letters
        kept only the value, as raw bytes."""
        headers = tuple((key, value) for key, value in self.headers if not key.startswith(HEADER_PREFIX))
        if payload is not None and (self.payload_object or "").endswith(".lfr.zst"):
            whole = decode_records(payload)[0]
            return Record(value=whole.value, key=whole.key, headers=whole.headers, timestamp_ms=self.timestamp_ms)
        return Record(value=payload or self.value, key=self.key, headers=headers, timestamp_ms=self.timestamp_ms)


@dataclass(frozen=True)
class LetterFilter:
    kind: str | None = None  # reason kind, e.g. failed_semantic_check
    reason_contains: str | None = None
    since_ms: int | None = None

    @property
    def name(self) -> str:
        """Stable and short: each filter remembers its own replay position, so replaying one kind of letter
        never marks letters of another kind as replayed."""
        if self == LetterFilter():
            return "all"
        return hashlib.sha256(repr((self.kind, self.reason_contains, self.since_ms)).encode()).hexdigest()[:12]

    def accepts(self, letter: ParkedLetter) -> bool:
        return (
            (self.kind is None or letter.kind == self.kind)
            and (self.reason_contains is None or self.reason_contains in letter.reason)
            and (self.since_ms is None or letter.timestamp_ms >= self.since_ms)
        )


class DeadLetterReader:
    """Reads the dead-letter topic up to its current end, each letter once. With a ``group`` the position is
    remembered (``commit``), so the next reader starts after what was handled, unless ``from_beginning``."""

    def __init__(self, bootstrap: str, topic: str, group: str | None = None, from_beginning: bool = False) -> None:
        self.bootstrap, self.topic, self.group, self.from_beginning = bootstrap, topic, group, from_beginning
        self._ends: dict[Any, int] = {}

    async def __aenter__(self) -> DeadLetterReader:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def letters(self) -> AsyncIterator[ParkedLetter]:
        consumer = self.consumer
        async with OffsetReader(self.bootstrap) as offsets:
            ends = await offsets.end_offsets(self.topic)
        self._ends = ends
        partitions = sorted(ends)
        consumer.assign(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp) if self.group and not self.from_beginning else None
            if committed is None:
                await consumer.seek_to_beginning(tp)  # offset 0 may be gone with retention
            else:
                consumer.seek(tp, committed)
        seen: set[tuple[str, str, str]] = set()
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for message in messages:
                    letter = ParkedLetter(
                        key=message.key,
                        value=message.value or b"",
                        headers=list(message.headers or ()),
                        timestamp_ms=message.timestamp,
                        letter_partition=tp.partition,
                        letter_offset=message.offset,
                    )
                    if message.offset < ends[tp] and letter.origin not in seen:
                        seen.add(letter.origin)
                        yield letter

    async def commit(self) -> None:
        """Remember that every letter up to the end seen by ``letters`` was handled (not the fetch position,
        which can run past it)."""
        if self.group and self._ends:
            await self.consumer.commit({tp: end for tp, end in self._ends.items()})


async def replay_letters(
    reader: DeadLetterReader,
    producer: EventProducer,
    store: ObjectStore | None,
    letters_filter: LetterFilter,
    progress: Callable[[ParkedLetter], None] = lambda _: None,
) -> int:
    """Send matching letters back to the ingestion topic, then commit the reader's position (after the broker
    has them all: a crash in between sends some twice, which the pipeline's dedup and merge absorb).
    Returns how many were sent."""
    sent = 0
    async for letter in reader.letters():
        if not letters_filter.accepts(letter):
            continue
        full = None
        if letter.payload_object:
            if store is None:
                raise RuntimeError(f"the letter at offset {letter.letter_offset} keeps its payload in object storage")
            full = await store.get(letter.payload_object)
        await producer.send_record(letter.original(full))
        sent += 1
        progress(letter)
    await producer.flush()
    await reader.commit()
    return sent


async def collect_letters(
    bootstrap: str, topic: str, letters_filter: LetterFilter, limit: int
) -> tuple[list[ParkedLetter], Counter[str]]:
    """The first ``limit`` letters the filter accepts, and how many it accepts by reason kind."""
    shown: list[ParkedLetter] = []
    kinds: Counter[str] = Counter()
    async with DeadLetterReader(bootstrap, topic) as reader:
        async for letter in reader.letters():
            if letters_filter.accepts(letter):
                kinds[letter.kind] += 1
                if len(shown) < limit:
                    shown.append(letter)
    return shown, kinds


async def replay_matching(
    endpoints: Endpoints,
    topics: tuple[str, str],
    group: str,
    letters_filter: LetterFilter,
    from_beginning: bool,
    progress: Callable[[ParkedLetter], None] = lambda _: None,
) -> int:
    """``replay_letters`` from the dead-letter topic to the ingestion topic (``topics``, in that order), in a
    consumer group per filter, with payloads spilled to the configured object store."""
    letters_topic, ingestion_topic = topics
    store = endpoints.archive()
    reader = DeadLetterReader(
        endpoints.kafka_bootstrap, letters_topic, f"{group}-{letters_filter.name}", from_beginning
    )
    try:
        async with reader, EventProducer(endpoints.kafka_bootstrap, ingestion_topic) as producer:
            return await replay_letters(reader, producer, store, letters_filter, progress)
    finally:
        await store.close()
