"""The compacted ``config`` topic, read whole by every worker into its ``Catalog``.

No consumer group: each worker assigns itself every partition from the beginning, so all workers converge
on the same models and score configs. A record that cannot be applied is logged and skipped (the previous
value stays), never fatal.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.transforms.catalog import Catalog

log = logging.getLogger("lfpipe.config")


class ConfigFeed:
    def __init__(self, bootstrap: str, topic: str, catalog: Catalog) -> None:
        self.topic = topic
        self.catalog = catalog
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
            self.catalog.apply((key or b"").decode(), None if value is None else orjson.loads(value))
        except Exception as exc:
            log.error("config record %r ignored: %s", key, exc)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
