"""The durability order of a batch, with in-memory sinks: nothing is committed before it is written, deletions
follow rows, a failing write is retried and never skipped, and refused entities become dead letters."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from pipeline.recordfile import Record, decode_records
from pipeline.runtime.batch import BatchOutput, EntityKey
from pipeline.runtime.checkpoint import Checkpoint, Sinks
from pipeline.runtime.retry import Health
from pipeline.sinks.archive import ArchiveSink
from pipeline.sinks.base import PermanentFailure
from pipeline.sources.kafka import Batch
from tests.unit.helpers import envelope, run_batch


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    async def get(self, key: str) -> bytes:
        return self.objects[key]

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield key

    async def close(self) -> None:
        return None


class Recording:
    """A sink that logs its writes, fails the first ``failures`` attempts, and refuses ``refuse``."""

    def __init__(self, name: str, log: list[str], failures: int = 0, refuse: dict | None = None) -> None:
        self.name, self.log, self.failures, self.refuse = name, log, failures, refuse or {}

    async def write(self, out: BatchOutput) -> dict[EntityKey, str]:
        if self.failures:
            self.failures -= 1
            self.log.append(f"{self.name} failed")
            raise ConnectionError(f"{self.name} is down")
        self.log.append(self.name)
        return dict(self.refuse)


class LoggedArchive(ArchiveSink):
    def __init__(self, store: MemoryStore, log: list[str]) -> None:
        super().__init__(store)  # type: ignore[arg-type]
        self.log = log

    async def write(self, out: BatchOutput) -> dict[EntityKey, str]:
        await asyncio.sleep(0.01)  # finishes after the rows: the order between the two must not matter
        self.log.append("archive")
        return await super().write(out)


def batch_output() -> BatchOutput:
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()
    return run_batch(
        [
            envelope("trace-create", {"id": "t1", "name": "kept"}, event_id="a"),
            envelope("trace-create", {"id": "t2", "name": "refused?", "input": image}, event_id="b"),
            envelope("trace-delete", {"id": "t0"}, event_id="c"),
            b"{not json",
        ]
    )


def make(log: list[str], store: MemoryStore, **sinks: Any) -> Checkpoint:
    defaults = {name: Recording(name, log) for name in ("media", "rows", "deletions", "dead_letters")}
    chosen = Sinks(archive=LoggedArchive(store, log), **{**defaults, **sinks})

    async def commit(batch: Batch) -> bool:
        log.append("commit")
        return True

    async def durable(out: BatchOutput, refused: Any) -> None:
        log.append(f"durable refused={sorted(key[2] for key in refused)}")

    return Checkpoint(chosen, commit, durable, retry_max_seconds=0.05, health=Health())


def test_every_write_comes_before_the_commit_in_the_durability_order():
    log: list[str] = []
    out = batch_output()
    assert out.media and out.deletions and out.dead_letters
    asyncio.run(make(log, MemoryStore()).commit(Batch([], {}, 0), out))
    assert log[0] == "media"
    assert sorted(log[1:3]) == ["archive", "rows"]
    assert log[3:] == ["deletions", "dead_letters", "commit", "durable refused=[]"]


def test_a_failing_write_is_retried_until_it_succeeds_and_never_skipped():
    log: list[str] = []
    rows = Recording("rows", log, failures=3)
    health = Health()
    checkpoint = make(log, MemoryStore(), rows=rows)
    checkpoint.health = health
    result = asyncio.run(checkpoint.commit(Batch([], {}, 0), batch_output()))
    assert log.count("rows failed") == 3
    assert log.index("rows") > log.index("rows failed")
    assert log.index("rows") < log.index("deletions") < log.index("commit")
    assert result.committed and not health.failing


def test_refused_entities_become_dead_letters_and_leave_the_archive():
    log: list[str] = []
    store = MemoryStore()
    refused = {("trace", "p1", "t2"): "Code: 53. TYPE_MISMATCH"}
    out = batch_output()
    result = asyncio.run(make(log, store, rows=Recording("rows", log, refuse=refused)).commit(Batch([], {}, 0), out))
    assert result.refused == refused and result.changes_memory
    letters = [letter for letter in out.dead_letters if letter.kind == "rejected_by_store"]
    assert [orjson.loads(letter.record.value)["id"] for letter in letters] == ["b"]
    assert letters[0].reason == "Code: 53. TYPE_MISMATCH"
    (archived,) = store.objects.values()
    assert [orjson.loads(record.value)["id"] for record in decode_records(archived)] == ["a"]
    assert log[-2:] == ["commit", "durable refused=['t2']"]


def test_a_permanent_failure_that_names_no_entity_stops_before_the_commit():
    log: list[str] = []

    class Refusing(Recording):
        async def write(self, out: BatchOutput) -> dict[EntityKey, str]:
            raise PermanentFailure("the store refused the whole batch")

    with pytest.raises(PermanentFailure):
        asyncio.run(
            make(log, MemoryStore(), deletions=Refusing("deletions", log)).commit(Batch([], {}, 0), batch_output())
        )
    assert "commit" not in log and not any(entry.startswith("durable") for entry in log)


def test_records_of_the_archive_are_the_messages_themselves():
    store = MemoryStore()
    out = batch_output()
    asyncio.run(ArchiveSink(store).write(out))  # type: ignore[arg-type]
    (data,) = store.objects.values()
    assert [record.value for record in decode_records(data)] == [record.value for record in out.archived]
    assert all(isinstance(record, Record) for record in out.archived)
