"""Reading stored state while a batch is still being fetched.

As each fetch of a batch is prepared, the entities it brings that memory does not hold are read from ClickHouse
at once (one read at a time; keys that arrive meanwhile go in the next), so closing the batch leaves only its
last fetch's entities to read. This is the read the batch would make at its close, started earlier: between a
batch's first fetch and its ``finish`` no entity enters memory (only ``complete`` adds entities, and the batch
ahead completed before this one began), so an entity missing early is still missing at the close. A batch ahead
whose checkpoint takes entities out of memory makes the runtime process this one again, from scratch.
"""

from __future__ import annotations

import asyncio
import contextlib

from pipeline.runtime.batch import EntityKey, StoredState
from pipeline.sources.stored_state import StoredStateReader


class Prefetch:
    def __init__(self, reader: StoredStateReader) -> None:
        self.reader = reader
        self.found: dict[EntityKey, StoredState] = {}
        self.requested: set[EntityKey] = set()
        self._waiting: list[EntityKey] = []
        self._reading: asyncio.Task[dict[EntityKey, StoredState]] | None = None

    def want(self, keys: list[EntityKey]) -> None:
        """Entities to read (each named once per batch)."""
        self._waiting.extend(keys)
        if self._reading is None and self._waiting:
            self._start()

    def _start(self) -> None:
        keys, self._waiting = self._waiting, []
        self.requested.update(keys)
        self._reading = asyncio.create_task(self.reader.read(keys))
        self._reading.add_done_callback(self._read)

    def _read(self, task: asyncio.Task[dict[EntityKey, StoredState]]) -> None:
        # Runs once per read: as the task's callback, or from ``rest`` when that got there first.
        if task is not self._reading or task.cancelled() or task.exception() is not None:
            return  # taken already, or ``rest`` raises it
        self.found.update(task.result())
        self._reading = None
        if self._waiting:
            self._start()

    async def rest(self, missing: list[EntityKey]) -> dict[EntityKey, StoredState]:
        """The stored state of ``missing`` (the closed batch's entities memory does not hold): what was read
        early, and the rest now. A failed early read raises here, as the read at the close would have."""
        while self._reading is not None:
            task = self._reading
            await task  # a task that is done returns at once, before its callback has run: take it here
            self._read(task)
        remaining = [key for key in missing if key not in self.requested]
        self.found.update(await self.reader.read(remaining))
        return self.found

    async def cancel(self) -> None:
        """The batch was dropped: stop waiting for its reads."""
        self._waiting = []
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(BaseException):
                await self._reading
