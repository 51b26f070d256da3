"""When a batch closes: its event limit, or its window counted from its first message's produce time, against a
scripted consumer that hands out messages the way ``getmany`` does (no broker: the rule is ours; the client is
exercised by the integration tests)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import ConsumerRecord, TopicPartition

from pipeline.sources.kafka import BatchSource

PARTITION = TopicPartition("events", 0)


class Scripted:
    """``getmany`` answering ``per_call`` new messages per call (all produced ``age`` seconds ago), then nothing."""

    def __init__(self, total: int, per_call: int, age: float) -> None:
        self.left, self.per_call, self.age = total, per_call, age
        self.offset = 0
        self.calls = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.calls += 1
        count = min(self.per_call, self.left, max_records)
        if count == 0:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        produced_ms = int((time.time() - self.age) * 1000)
        messages = [self._message(produced_ms) for _ in range(count)]
        self.left -= count
        return {PARTITION: messages}

    def _message(self, produced_ms: int) -> ConsumerRecord:
        self.offset += 1
        return ConsumerRecord("events", 0, self.offset - 1, produced_ms, 0, None, b"{}", None, 2, -1, [])


def source_over(consumer: Scripted) -> BatchSource:
    source = BatchSource("127.0.0.1:1", "events", "group", 5000, 10)
    source.consumer = consumer  # type: ignore[assignment]
    return source


def test_a_batch_waits_for_its_window_from_its_first_message():
    consumer = Scripted(total=30, per_call=10, age=0.0)
    started = time.monotonic()
    batch = asyncio.run(source_over(consumer).next_batch(1000, 10**9, 0.3))
    assert batch is not None and len(batch.records) == 30
    assert time.monotonic() - started >= 0.25
    assert [record.offset for record in batch.records] == list(range(30))
    assert batch.offsets == {PARTITION: 30}


def test_messages_that_waited_behind_a_slow_batch_close_it_with_what_is_fetched_without_waiting():
    consumer = Scripted(total=50, per_call=20, age=10.0)  # produced long before: the window is over
    started = time.monotonic()
    batch = asyncio.run(source_over(consumer).next_batch(1000, 10**9, 1.0))
    assert batch is not None and len(batch.records) == 50
    assert consumer.calls == 4  # three fetches that found messages, one that found none and did not wait
    assert time.monotonic() - started < 0.5


def test_the_event_limit_closes_a_batch_whatever_the_window():
    consumer = Scripted(total=100, per_call=40, age=0.0)
    batch = asyncio.run(source_over(consumer).next_batch(50, 10**9, 5.0))
    assert batch is not None and len(batch.records) == 50
