"""The compacted ``config`` topic, read whole by every worker (into its ``Catalog``) and every gateway (into its
``KeyRing``), and written by the CLI.

No consumer group: each reader assigns itself every partition from the beginning, so all readers converge on
the same models, score configs and API keys. A record that cannot be applied is logged and skipped (the
previous value stays), never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.transforms.catalog import Catalog

log = logging.getLogger("lfpipe.config")
Apply = Callable[[str, Any], None]  # (key, value or None for a deletion); raises ValueError for a bad record


class ConfigFeed:
    def __init__(self, bootstrap: str, topic: str, apply: Apply) -> None:
        self.topic = topic
        self.apply = apply
        self.caught_up = asyncio.Event()
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60) -> None:
        """Start reading; returns once everything present at start has been applied."""
        # aiokafka clients must be created inside the running loop.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        if self.topic not in await self._consumer.topics():
            raise RuntimeError(f"config topic {self.topic!r} does not exist: run `lfpipe topics apply`")
        # Without a group, a subscription is assigned every partition of the topic.
        self._consumer.subscribe([self.topic])
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"no partitions of {self.topic!r} were assigned within {timeout}s")
            await asyncio.sleep(0.05)
        partitions = list(self._consumer.assignment())
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._run(ends))
        await asyncio.wait_for(self.caught_up.wait(), timeout)

    async def _run(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    self._apply(message.key, message.value)
            if not self.caught_up.is_set():
                # Positions, not message offsets: compaction may have removed the last offsets.
                positions = [await self._consumer.position(tp) for tp in ends]
                if all(position >= ends[tp] for position, tp in zip(positions, ends, strict=True)):
                    self.caught_up.set()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self.apply((key or b"").decode(), None if value is None else orjson.loads(value))
        except Exception as exc:
            log.error("config record %r ignored: %s", key, exc)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()


async def read_config(bootstrap: str, topic: str, apply: Apply) -> None:
    """Apply the whole topic as it is now, once."""
    feed = ConfigFeed(bootstrap, topic, apply)
    try:
        await feed.start()
    finally:
        await feed.stop()


async def publish_config(bootstrap: str, topic: str, key: str, value: dict[str, Any] | None) -> None:
    """Write one record (None deletes), acknowledged by every in-sync replica."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, None if value is None else orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()


async def read_catalog(bootstrap: str, topic: str) -> Catalog:
    """The default models plus everything on the config topic now: what a worker starts with."""
    catalog = Catalog.with_defaults()
    await read_config(bootstrap, topic, catalog.apply)
    return catalog
