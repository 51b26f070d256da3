"""The raw archive: each processed batch becomes one record file in a local folder or an S3 bucket.

Object names are derived from the hour the batch was processed and the batch's offset ranges, so re-archiving the same
batch in the same hour overwrites the same object. A batch re-archived later, or cut differently after a
restart, can repeat records of an earlier object; every record carries topic, partition and offset, so
readers drop repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from pipeline import metrics
from pipeline.archive_layout import ROOT, object_key
from pipeline.recordfile import Record, decode_records, encode_records
from pipeline.runtime.batch import BatchOutput
from pipeline.sinks.base import PermanentFailure, Refused
from pipeline.stores.objects import ObjectStore, is_refused_object


def archive_key(records: Sequence[Record], now: float | None = None) -> str:
    """``raw/YYYY/MM/DD/HH/<topic>-<digest of offset ranges>.lfr.zst``, UTC hour of writing."""
    ranges: dict[tuple[str, int], list[int]] = {}
    for record in records:
        ranges.setdefault((record.topic, record.partition), []).append(record.offset)
    digest = hashlib.sha256(
        repr(sorted((tp, min(offsets), max(offsets)) for tp, offsets in ranges.items())).encode()
    ).hexdigest()[:20]
    topic = records[0].topic or "records"
    return object_key(topic, digest, now)


class ArchiveSink:
    """One record file per batch. It never refuses single messages: batches are bounded in bytes
    (``LFPIPE_BATCH_MAX_BYTES``), so an object the store refuses is a configuration problem and fails the
    worker (``PermanentFailure``) instead of being retried forever."""

    name = "archive"

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def write(self, out: BatchOutput) -> Refused:
        if out.archived:
            await self._put(archive_key(out.archived, out.now_ms / 1000), out.archived)
        return {}

    async def replace(self, original: Sequence[Record], out: BatchOutput) -> None:
        """Write the batch's object again (same key as ``original`` gave it) with only ``out.archived``: after a
        store refused some entities, their messages are dead letters, not archive."""
        key = archive_key(original, out.now_ms / 1000)
        if out.archived:
            await self._put(key, out.archived)
        else:
            await self.store.delete(key)

    async def _put(self, key: str, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        data = await asyncio.to_thread(encode_records, records)
        try:
            await self.store.put(key, data)
        except Exception as exc:
            if is_refused_object(exc):
                raise PermanentFailure(
                    f"object storage refused archive object {key!r} of {len(data)} bytes: {exc}"
                ) from exc
            raise
        metrics.ARCHIVE_SECONDS.observe(time.perf_counter() - started)
        metrics.ARCHIVE_OBJECTS.inc()
        metrics.ARCHIVE_BYTES.inc(len(data))


async def archive_records(store: ObjectStore, prefix: str = ROOT) -> AsyncIterator[Record]:
    """Records of the raw archive in object order, repeats (same topic, partition, offset) dropped."""
    seen: set[tuple[str, int, int]] = set()
    async for key in store.list(prefix):
        for record in decode_records(await store.get(key)):
            position = (record.topic, record.partition, record.offset)
            if position in seen:
                continue
            seen.add(position)
            yield record


def filter_records(data: bytes, keep: Callable[[Record], bool]) -> tuple[bytes | None, int]:
    """An archive object with only the records ``keep`` accepts (None when none are left), and how many
    went; the same bytes when nothing goes."""
    records = list(decode_records(data))
    kept = [record for record in records if keep(record)]
    if len(kept) == len(records):
        return data, 0
    return (encode_records(kept) if kept else None), len(records) - len(kept)


async def rewrite_object(store: ObjectStore, key: str, keep: Callable[[Record], bool]) -> int:
    """Rewrite (or delete, once empty) one archive object without the records ``keep`` rejects; returns how
    many were removed. Decoding and filtering are CPU work, done off the event loop."""
    kept, removed = await asyncio.to_thread(filter_records, await store.get(key), keep)
    if removed:
        await (store.put(key, kept) if kept is not None else store.delete(key))
    return removed
