"""Consumer lag from the broker's own offsets: end offsets of a topic and a group's committed offsets."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


class OffsetReader:
    """One admin client and one group-less consumer, kept open for repeated reads."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> OffsetReader:
        # aiokafka clients bind to the running loop, so they are made here rather than in __init__.
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await self.admin.start()
        try:
            await self.consumer.start()
        except BaseException:
            await self.admin.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        if topic not in self._partitions:
            metadata = await self.admin.describe_topics([topic])
            self._partitions[topic] = [TopicPartition(topic, p["partition"]) for p in metadata[0]["partitions"]]
        return await self.consumer.end_offsets(self._partitions[topic])

    async def lag_by_partition(self, group: str, topic: str) -> dict[TopicPartition, int]:
        """Messages of each partition that ``group`` has not committed yet."""
        ends = await self.end_offsets(topic)
        committed = await self.admin.list_consumer_group_offsets(group)
        return {tp: max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items()}


async def consumer_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in ``topic`` that ``group`` has not committed yet."""
    async with OffsetReader(bootstrap) as reader:
        return sum((await reader.lag_by_partition(group, topic)).values())
