"""The gateway's way into Kafka: a request's messages, acknowledged by every in-sync replica, before a success.

One idempotent producer per gateway process (acks=all, so an acknowledged event survives a broker loss when
the topic is replicated). ``deliver`` returns only once Kafka has acknowledged every message it was given, and
raises ``Unavailable`` when that does not happen within the ack timeout: the caller answers 503 and the client
sends again. Messages of a request that timed out may still arrive; their repeats are absorbed by the worker's
dedup on event ids (and by deterministic ids for OTel spans).

Requests are not sent message by message: a pump takes every request waiting, packs their messages into one
record batch per partition (the partition Kafka's default partitioner gives the key, as every producer of the
topic uses) and hands the batches over whole. A message then costs an append to a batch instead of a future,
a partitioner call and an accumulator entry of its own; and the next pump round forms while this one is sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from pipeline.recordfile import Record
from pipeline.runtime.batch import DeadLetter
from pipeline.sinks.dead_letters import fits_inline, letter_message, spilled_object
from pipeline.stores.objects import ObjectStore

log = logging.getLogger("lfpipe.gateway")
MAX_WAITING_MESSAGES = 50_000  # beyond this Kafka is not keeping up: refuse (503) rather than grow
FAILING_SECONDS = 10.0
BATCH_BYTES = 1_048_576  # per partition and pump round; a larger message gets a batch of its own
key_hash = functools.lru_cache(maxsize=1 << 16)(murmur2)  # entities' later events repeat their key


class Unavailable(Exception):
    """Kafka did not acknowledge in time (or is not reachable): answer 503 with Retry-After."""


@dataclass
class _Waiting:
    messages: Sequence[Record]
    acknowledged: asyncio.Future[None]
    abandoned: bool = False  # answered 503 before the pump took it: not sent at all


@dataclass
class _Round:
    """One pump round: record batches per partition, and which of them each request needs."""

    chains: dict[int, list] = field(default_factory=dict)  # partition -> BatchBuilders
    needs: list[set[tuple[int, int]]] = field(default_factory=list)  # per request: (partition, index)


class Delivery:
    def __init__(
        self, bootstrap: str, topic: str, dead_letter_topic: str, store: ObjectStore, ack_timeout: float
    ) -> None:
        self.bootstrap, self.topic, self.dead_letter_topic = bootstrap, topic, dead_letter_topic
        self.store = store
        self.ack_timeout = ack_timeout
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: list[_Waiting] = []
        self._waiting_messages = 0
        self._wake = asyncio.Event()
        self._failed_at: float | None = None  # when Kafka last failed to acknowledge; None after a success

    @property
    def connected(self) -> bool:
        return self._producer is not None

    @property
    def failing(self) -> bool:
        """Kafka failed the latest request in the last few seconds (readiness says so; it clears itself so a
        load balancer sends traffic again and finds out)."""
        return self._failed_at is not None and time.monotonic() - self._failed_at < FAILING_SECONDS

    def start(self) -> None:
        """Connect in the background: a gateway starts (and answers 503) while Kafka is still away."""
        self._tasks = [asyncio.create_task(self._connect()), asyncio.create_task(self._pump())]

    async def _connect(self) -> None:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                compression_type="snappy",  # 500 MB/s a core: the cheapest codec on the request path
                max_request_size=6_000_000,
                max_batch_size=BATCH_BYTES,
            )
            try:
                await producer.start()
                await producer.partitions_for(self.topic)
            except KafkaError as exc:
                await producer.stop()
                log.warning("Kafka at %s not reachable (%s); retrying in %.1fs", self.bootstrap, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            self._producer = producer
            log.info("connected to Kafka at %s", self.bootstrap)
            return

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._producer is not None:
            await self._producer.stop()

    async def deliver(self, messages: Sequence[Record], letters: Sequence[DeadLetter] = ()) -> None:
        producer = self._producer
        if producer is None:
            raise Unavailable("not connected to Kafka yet")
        if self._waiting_messages + len(messages) > MAX_WAITING_MESSAGES:
            raise Unavailable(f"Kafka is not keeping up: {self._waiting_messages} events wait for acknowledgement")
        waiting = _Waiting(messages, asyncio.get_running_loop().create_future())
        if messages:
            self._waiting.append(waiting)
            self._waiting_messages += len(messages)
            self._wake.set()
        else:
            waiting.acknowledged.set_result(None)
        try:
            async with asyncio.timeout(self.ack_timeout):
                if letters:
                    await asyncio.gather(*[await self._send_letter(producer, letter) for letter in letters])
                await waiting.acknowledged
        except TimeoutError:
            waiting.abandoned = True
            self._failed_at = time.monotonic()
            raise Unavailable(f"Kafka did not acknowledge within {self.ack_timeout:g}s") from None
        except KafkaError as exc:
            self._failed_at = time.monotonic()
            raise Unavailable(f"Kafka refused the write: {exc}") from exc
        self._failed_at = None

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken, self._waiting = self._waiting, []
            self._waiting_messages -= sum(len(waiting.messages) for waiting in taken)
            taken = [waiting for waiting in taken if not waiting.abandoned]
            if not taken or self._producer is None:
                continue
            try:
                await self._send_round(self._producer, taken)
            except Exception as exc:  # metadata or accumulator failure: these requests fail, the pump goes on
                log.warning("sending %d requests to Kafka failed: %s", len(taken), exc)
                for waiting in taken:
                    if not waiting.acknowledged.done():
                        waiting.acknowledged.set_exception(exc if isinstance(exc, KafkaError) else KafkaError(exc))

    async def _send_round(self, producer: AIOKafkaProducer, taken: list[_Waiting]) -> None:
        partitions = sorted(await producer.partitions_for(self.topic))
        packed = _pack(producer, taken, partitions)
        sent: dict[tuple[int, int], asyncio.Future[object]] = {}
        # The first batch of every partition before any second one: a partition's next batch waits until its
        # previous one left, and must not hold up the other partitions.
        depth = max(len(chain) for chain in packed.chains.values())
        for index in range(depth):
            for partition, chain in packed.chains.items():
                if index < len(chain):
                    future = await producer.send_batch(chain[index], self.topic, partition=partition)
                    sent[(partition, index)] = future
        _settle_when_sent(taken, packed.needs, sent)

    async def _send_letter(self, producer: AIOKafkaProducer, letter: DeadLetter) -> asyncio.Future[object]:
        spilled_to = None
        if not fits_inline(letter.record):
            spilled_to, content = spilled_object(letter.record)
            await self.store.put(spilled_to, content)
        key, value, headers = letter_message(letter, spilled_to)
        return await producer.send(self.dead_letter_topic, value, key=key, headers=headers)


def _pack(producer: AIOKafkaProducer, taken: list[_Waiting], partitions: list[int]) -> _Round:
    packed = _Round()
    count = len(partitions)
    for waiting in taken:
        needs = set()
        for message in waiting.messages:
            partition = partitions[(key_hash(message.key) & 0x7FFFFFFF) % count]
            chain = packed.chains.setdefault(partition, [])
            headers = list(message.headers)
            if (
                not chain
                or chain[-1].append(timestamp=None, key=message.key, value=message.value, headers=headers) is None
            ):
                chain.append(producer.create_batch())
                chain[-1].append(timestamp=None, key=message.key, value=message.value, headers=headers)
            needs.add((partition, len(chain) - 1))
        packed.needs.append(needs)
    return packed


def _settle_when_sent(
    taken: list[_Waiting], needs: list[set[tuple[int, int]]], sent: dict[tuple[int, int], asyncio.Future[object]]
) -> None:
    """Settle each request once every batch it needs is acknowledged, or as soon as one of them failed: one
    callback per batch, none per request."""
    missing = [len(need) for need in needs]
    dependents: dict[tuple[int, int], list[int]] = {}
    for index, need in enumerate(needs):
        for batch in need:
            dependents.setdefault(batch, []).append(index)

    def settle(batch: tuple[int, int], done: asyncio.Future[object]) -> None:
        problem = KafkaError("the send was cancelled") if done.cancelled() else done.exception()
        for index in dependents[batch]:
            acknowledged = taken[index].acknowledged
            if acknowledged.done():  # failed already, or the request gave up waiting (503)
                continue
            missing[index] -= 1
            if problem is not None:
                acknowledged.set_exception(problem)
            elif missing[index] == 0:
                acknowledged.set_result(None)

    for batch, future in sent.items():
        future.add_done_callback(functools.partial(settle, batch))
