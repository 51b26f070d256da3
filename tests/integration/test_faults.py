"""Fault injection in CI: ten SIGKILLs at random points, a broker restart, ClickHouse and object storage each
down for a minute, poison messages; afterwards FINAL rows equal the reference merge of everything produced,
the archive holds every valid message, and every bad message is a dead letter."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from load.generate import StreamShape, generate_stream
from load.replay import Pace, replay
from load.report import metric_value, scrape
from pipeline.producer import EventProducer
from tests.integration.faults import FaultRun, readiness
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = float(os.environ.get("LFPIPE_TEST_OUTAGE_SECONDS", "60"))


def assigned_partitions(port: int) -> float:
    return metric_value(scrape(port) or "", "lfpipe_assigned_partitions")


def test_faults_lose_nothing_and_duplicate_nothing(
    pipeline_factory: Callable[..., PipelineEnv], stack: tuple[Path, dict]
):
    pipeline = pipeline_factory(shared_clickhouse=True)
    front = pipeline.clickhouse_front
    assert front is not None
    rng = random.Random(17)
    run = FaultRun(pipeline, stack[0], rng, say=print)
    shape = StreamShape(traces=600, seed=29, invalid=0.01, duplicates=0.02, out_of_order=0.05)
    stream = list(generate_stream(shape))
    try:
        run.schedule(stream, kills=10, outage_seconds=OUTAGE_SECONDS, front=front)
        result = run.verify()
    finally:
        run.stop_workers()
    assert result["kills_survived"] == 10
    assert result["outages_survived"] == ["kafka", "clickhouse", "object storage"]
    assert result["row_mismatches"] == []
    assert result["duplicate_final_rows"] == 0
    assert result["rows_found"] == result["rows_expected"] > 0
    assert result["archive_problems"] == []
    assert result["dead_letters"] == result["dead_letters_expected"] > len(run.poison)


def test_scaling_one_to_three_and_back_during_a_replay(pipeline_factory: Callable[..., PipelineEnv], stack):
    pipeline = pipeline_factory(shared_clickhouse=True)
    run = FaultRun(pipeline, stack[0], random.Random(5))
    stream = list(generate_stream(StreamShape(traces=500, seed=41, invalid=0.01, duplicates=0.02)))
    run.produced.extend(stream)

    try:

        async def replay_stream() -> None:
            async with EventProducer(pipeline.bootstrap, pipeline.topic("ingestion")) as producer:
                await replay(producer.send_record, stream, Pace(rate=len(stream) / 40))  # a 40 s replay
                await producer.flush()

        replaying = threading.Thread(target=asyncio.run, args=(replay_stream(),))
        first, first_port = run.start_worker()
        run.wait_consumed(first, first_port, 0)
        replaying.start()
        run.wait_consumed(first, first_port, 200)

        # Scale out: two more workers join the group and take partitions while the replay runs.
        extra = [run.start_worker() for _ in range(2)]
        for worker, port in extra:
            run.wait_consumed(worker, port, 1)
        everyone = [(first, first_port), *extra]
        deadline = time.monotonic() + 60
        while sum(assigned_partitions(port) for _, port in everyone) != 12 or not all(
            assigned_partitions(port) for _, port in everyone
        ):
            assert time.monotonic() < deadline, "the three workers should share the 12 partitions"
            time.sleep(0.5)
        status, body = readiness(first_port)
        assert status == 200 and body["ready"] and body["partitions"], body
        # Scale in: they leave gracefully (SIGTERM drains and exits 0) and the first worker takes everything back.
        assert replaying.is_alive(), "the scale-in should happen while the replay runs"
        stopping = time.monotonic()
        for worker, _ in extra:
            worker.terminate()
        for worker, _ in extra:
            assert worker.wait(60) == 0, pipeline.worker_logs()
        assert time.monotonic() - stopping < 30, "SIGTERM drains within a bounded time"
        replaying.join(120)
        assert not replaying.is_alive()
        run.finish(first)
    finally:
        run.stop_workers()

    result = run.verify()
    assert result["row_mismatches"] == []
    assert result["duplicate_final_rows"] == 0
    assert result["rows_found"] == result["rows_expected"] > 0
    assert result["archive_problems"] == []
    assert result["dead_letters"] == result["dead_letters_expected"] > 0
