"""Replaying recordings (or the raw archive) into a topic at a chosen pace.

Records are sent in file order through one idempotent producer, so per-key (per-partition) order is kept.
Optionally every id and project id is rewritten with a suffix, so one recording can be replayed many times
without its events collapsing into the same entities.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.endpoints import Endpoints
from pipeline.producer import EventProducer, message_key
from pipeline.recordfile import Record, read_records
from pipeline.sinks.archive import archive_records

# Body fields that name an entity: rewritten together so references between events stay intact.
ID_FIELDS = ("id", "traceId", "parentObservationId", "observationId", "sessionId", "datasetRunId")


@dataclass(frozen=True)
class Pace:
    """``recorded`` (x speed), a fixed ``rate`` in events/s, or neither: as fast as possible."""

    speed: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise ValueError("choose a speed multiple of the recorded pace or a fixed rate, not both")


def rewrite(record: Record, suffix: str) -> Record:
    """Ids and project ids get ``suffix``; the key follows. Values that are not events pass unchanged."""
    try:
        event = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return record
    if not isinstance(event, dict) or not isinstance(event.get("body"), dict):
        return record
    body = dict(event["body"])
    for name in ID_FIELDS:
        if isinstance(body.get(name), str):
            body[name] = body[name] + suffix
    event = {**event, "body": body}
    for name in ("id", "project_id"):
        if isinstance(event.get(name), str):
            event[name] = event[name] + suffix
    return Record(value=orjson.dumps(event), key=message_key(event), headers=record.headers)


def paced(records: Iterable[Record], pace: Pace) -> Iterator[tuple[float, Record]]:
    """(seconds after start when the record is due, record)."""
    first_ts: int | None = None
    for index, record in enumerate(records):
        if pace.rate:
            yield index / pace.rate, record
        elif pace.speed:
            first_ts = record.timestamp_ms if first_ts is None else first_ts
            yield max(0.0, (record.timestamp_ms - first_ts) / 1000 / pace.speed), record
        else:
            yield 0.0, record


async def replay(
    send: Callable[[Record], Any],
    records: Iterable[Record],
    pace: Pace,
    suffix: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send every record when it is due; returns how many were sent."""
    started = time.monotonic()
    count = 0
    for due, record in paced(records, pace):
        delay = started + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(rewrite(record, suffix) if suffix else record)
        count += 1
        if progress and count % 500 == 0:
            progress(500)
    if progress:
        progress(count % 500)
    return count


async def source_records(source: str, endpoints: Endpoints) -> list[Record]:
    """The messages of a recording file, or of the raw archive at an ``s3://`` URL or folder."""
    if Path(source).is_file():
        with open(source, "rb") as handle:
            return list(read_records(handle))
    store = endpoints.archive(source)
    try:
        return [record async for record in archive_records(store)]
    finally:
        await store.close()


async def replay_to_topic(
    endpoints: Endpoints,
    topic: str,
    records: list[Record],
    pace: Pace,
    suffix: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """``replay`` into ``topic`` with lfpipe's producer; returns once the broker has every message."""
    async with EventProducer(endpoints.kafka_bootstrap, topic) as producer:
        sent = await replay(producer.send_record, records, pace, suffix, progress)
        await producer.flush()
        return sent
