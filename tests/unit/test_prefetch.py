"""Stored state read while a batch is fetched: one read at a time, keys that come meanwhile in the next, only the
rest read at the close, every key read once, a failed read raised at the close, a dropped batch's read cancelled.
The reader here answers from a dict (ClickHouse reads are exercised by the integration tests)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.runtime.prefetch import Prefetch

STORED = {("trace", "p", f"t{n}"): ({"id": f"t{n}"}, {}) for n in range(0, 100, 2)}  # the even ones exist


class Reader:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[tuple[str, str, str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail = fail

    async def read(self, keys):
        self.calls.append(list(keys))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if self.fail:
            raise ConnectionError("ClickHouse is away")
        return {key: STORED[key] for key in keys if key in STORED}


def keys(*numbers: int) -> list[tuple[str, str, str]]:
    return [("trace", "p", f"t{n}") for n in numbers]


def test_reads_run_one_at_a_time_and_the_close_reads_only_the_rest():
    async def scenario():
        reader = Reader()
        prefetch = Prefetch(reader)  # type: ignore[arg-type]
        prefetch.want(keys(0, 1))
        prefetch.want(keys(2, 3))  # while the first read runs: waits for the next
        prefetch.want(keys(4))
        await asyncio.sleep(0.05)
        found = await prefetch.rest(keys(0, 1, 2, 3, 4, 5, 6))
        return reader, found

    reader, found = asyncio.run(scenario())
    assert reader.calls == [keys(0, 1), keys(2, 3, 4), keys(5, 6)]
    assert reader.most_in_flight == 1
    assert set(found) == set(keys(0, 2, 4, 6))


def test_the_close_waits_for_a_read_under_way():
    async def scenario():
        reader = Reader()
        prefetch = Prefetch(reader)  # type: ignore[arg-type]
        prefetch.want(keys(8, 9))
        return reader, await prefetch.rest(keys(8, 9))  # at once: the early read is still running

    reader, found = asyncio.run(scenario())
    assert reader.calls == [keys(8, 9), []]
    assert set(found) == set(keys(8))


def test_a_failed_early_read_fails_the_close():
    async def scenario():
        prefetch = Prefetch(Reader(fail=True))  # type: ignore[arg-type]
        prefetch.want(keys(1))
        await asyncio.sleep(0.05)
        await prefetch.rest(keys(1))

    with pytest.raises(ConnectionError):
        asyncio.run(scenario())


def test_a_dropped_batch_cancels_its_read():
    async def scenario():
        prefetch = Prefetch(Reader())  # type: ignore[arg-type]
        prefetch.want(keys(1))
        await prefetch.cancel()
        return prefetch

    prefetch = asyncio.run(scenario())
    assert prefetch.found == {}


@pytest.mark.timeout(20)  # the flaw this guards against was a loop that never yields
def test_the_close_takes_a_read_that_finished_before_its_callback_ran():
    async def scenario():
        reader = Reader()
        prefetch = Prefetch(reader)  # type: ignore[arg-type]
        read = asyncio.get_running_loop().create_future()
        read.add_done_callback(prefetch._read)
        prefetch._reading = read  # type: ignore[assignment]
        prefetch.requested.update(keys(2))
        read.set_result({keys(2)[0]: STORED[keys(2)[0]]})  # done; its callback only scheduled
        return reader, await prefetch.rest(keys(2, 5))

    reader, found = asyncio.run(scenario())
    assert reader.calls == [keys(5)]
    assert set(found) == set(keys(2))
