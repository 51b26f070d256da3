"""Recording a topic into a record file: an offset range, a time range, or the next N seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.recordfile import Record, RecordWriter


@dataclass(frozen=True)
class Window:
    """What to record. Offsets apply to every partition; times are epoch milliseconds."""

    from_offset: int | None = None
    to_offset: int | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    seconds: float | None = None


async def record_topic(
    bootstrap: str, topic: str, out: Path, window: Window, progress: Callable[[int], None] | None = None
) -> int:
    """Write the window's messages (keys, headers, values, timestamps) to ``out``; returns the count."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
        if not partitions:
            raise ValueError(f"topic {topic!r} has no partitions in the broker's metadata yet")
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        # Explicit numeric seeks: lazy resets (seek_to_beginning) can race with the first position() call.
        starts = await consumer.beginning_offsets(partitions)
        deadline = None
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        if window.seconds is not None:
            for tp in partitions:
                consumer.seek(tp, ends[tp])
            deadline = time.monotonic() + window.seconds
        elif window.from_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, window.from_ms))
            for tp in partitions:
                consumer.seek(tp, found[tp].offset if found[tp] else ends[tp])
        elif window.from_offset is not None:
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], min(window.from_offset, ends[tp])))
        stops = {tp: min(ends[tp], window.to_offset) if window.to_offset is not None else ends[tp] for tp in partitions}
        with open(out, "wb") as handle, RecordWriter(handle) as writer:
            await _copy(consumer, partitions, stops, deadline, window, writer, progress)
            return writer.count
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            raise ValueError(f"topic {topic!r} does not exist")
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in described[0]["partitions"])
    finally:
        await admin.close()


async def _copy(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    stops: dict[TopicPartition, int],
    deadline: float | None,
    window: Window,
    writer: RecordWriter,
    progress: Callable[[int], None] | None,
) -> None:
    while True:
        if deadline is not None:
            if time.monotonic() >= deadline:
                break
        elif all([await consumer.position(tp) >= stops[tp] for tp in partitions]):
            break
        batch = await consumer.getmany(timeout_ms=500)
        fresh = 0
        for tp, messages in batch.items():
            for message in messages:
                if deadline is None and message.offset >= stops[tp]:
                    continue
                if window.to_ms is not None and message.timestamp > window.to_ms:
                    continue
                writer.write(
                    Record(
                        value=message.value or b"",
                        key=message.key,
                        timestamp_ms=message.timestamp,
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        headers=tuple((k, v or b"") for k, v in message.headers or ()),
                    )
                )
                fresh += 1
        if progress and fresh:
            progress(fresh)
