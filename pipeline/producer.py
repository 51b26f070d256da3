"""Producing ingestion events with the topic's key rule, from Python or from a file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.recordfile import Record, read_records
from pipeline.transforms.events import ENTITY_BY_TYPE
from pipeline.transforms.events import message_key as key_rule


def message_key(event: dict[str, Any]) -> bytes:
    """``<project_id>:<entity>:<body.id>`` (see topics/README.md); malformed events still get a key."""
    body = event.get("body") if isinstance(event.get("body"), dict) else {}
    entity = ENTITY_BY_TYPE.get(str(event.get("type")), "unknown")
    entity_id = body.get("id") if entity != "score" else body.get("id") or event.get("id")
    return key_rule(str(event.get("project_id", "")), entity, str(entity_id))


def event_records(events: Iterable[dict[str, Any]], project_id: str | None = None) -> Iterator[Record]:
    for event in events:
        if project_id and not event.get("project_id"):
            event = {**event, "project_id": project_id}
        yield Record(value=orjson.dumps(event), key=message_key(event))


def file_records(path: Path, project_id: str | None = None) -> Iterator[Record]:
    """NDJSON envelopes (one per line) or an LFR1 recording (``.lfr.zst``) sent byte for byte."""
    if path.name.endswith(".lfr.zst"):
        with open(path, "rb") as handle:
            yield from read_records(handle)
        return
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield from event_records([orjson.loads(line)], project_id)


class EventProducer:
    """``async with EventProducer(bootstrap, topic) as p: await p.send(event)``."""

    def __init__(self, bootstrap: str, topic: str, linger_ms: int = 5) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_request_size=6_000_000,
            compression_type="zstd",
        )

    async def __aenter__(self) -> EventProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, event: dict[str, Any]) -> None:
        await self._producer.send(self.topic, orjson.dumps(event), key=message_key(event))

    async def send_record(self, record: Record) -> None:
        """Queue one record (key and headers kept) with a fresh timestamp; ``flush`` waits for the broker."""
        await self._producer.send(self.topic, record.value, key=record.key, headers=list(record.headers) or None)

    async def flush(self) -> None:
        await self._producer.flush()

    async def send_records(self, records: Iterable[Record], progress: Callable[[int], None] | None = None) -> int:
        """Send records (keys and headers kept), then wait until the broker has them all."""
        count = 0
        for record in records:
            await self.send_record(record)
            count += 1
            if progress and count % 1000 == 0:
                progress(1000)
        await self._producer.flush()
        if progress:
            progress(count % 1000)
        return count
