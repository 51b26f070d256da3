"""Consumer lag of a group on a topic, from the broker's own offsets."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def consumer_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in ``topic`` that ``group`` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        metadata = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in metadata[0]["partitions"]]
        ends = await consumer.end_offsets(partitions)
        return sum(max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()
