"""Media objects (content-addressed) into object storage, before the rows whose tokens point at them.

Always written, never remembered as written: a trace deletion (on any worker) may have removed the object
since, and content-addressed keys make the write idempotent.
"""

from __future__ import annotations

import asyncio
import time

from pipeline import metrics
from pipeline.runtime.batch import BatchOutput, MediaKey
from pipeline.sinks.base import Refused
from pipeline.stores.objects import ObjectStore, is_refused_object
from pipeline.transforms.media import MediaObject, media_object_key

CONCURRENT_PUTS = 16  # objects in flight per batch: object stores answer many small puts in parallel


class MediaSink:
    name = "media"

    def __init__(self, store: ObjectStore, concurrency: int = CONCURRENT_PUTS) -> None:
        self.store = store
        self.concurrency = concurrency

    async def write(self, out: BatchOutput) -> Refused:
        if not out.media:
            return {}
        slots = asyncio.Semaphore(self.concurrency)
        outcomes = await asyncio.gather(*(self._put(slots, key, media) for key, media in out.media.items()))
        refused: Refused = {}
        for (project_id, media_id), problem in zip(out.media, outcomes, strict=True):
            if problem is not None:
                for owner in out.media_owners.get((project_id, media_id), ()):
                    refused[owner] = problem
        if refused:
            metrics.STORE_REFUSALS.labels(self.name).inc(len(refused))
        return refused

    async def _put(self, slots: asyncio.Semaphore, media_key_: MediaKey, media: MediaObject) -> str | None:
        """None once stored; the store's reason when it refuses the object for good."""
        key = media_object_key(media_key_[0], media.media_id, media.content_type)
        async with slots:
            started = time.perf_counter()
            try:
                await self.store.put(key, media.content)
            except Exception as exc:
                if not is_refused_object(exc):
                    raise
                return f"object storage refused media object {key!r}: {exc}"
        metrics.MEDIA_OBJECTS.inc()
        metrics.MEDIA_BYTES.inc(len(media.content))
        metrics.MEDIA_SECONDS.observe(time.perf_counter() - started)
        return None
