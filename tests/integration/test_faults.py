"""Fault injection in CI: ten SIGKILLs at random points, a broker restart, ClickHouse and object storage each
down for a minute, poison messages; afterwards FINAL rows equal the reference merge of everything produced,
the archive holds every valid message, and every bad message is a dead letter."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from load.generate import StreamShape, generate_stream
from tests.integration.faults import FaultRun, poison_records
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = float(os.environ.get("LFPIPE_TEST_OUTAGE_SECONDS", "60"))


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
    quarter = len(stream) // 4

    run.kill_at_random_points(stream[:quarter], kills=10)
    stop_kafka = lambda: run.stop_service("kafka")  # noqa: E731
    run.outage("kafka", 5, stream[quarter : 2 * quarter], stop_kafka, run.start_services)
    felt = ("clickhouse", "clickhouse-read")
    run.outage("clickhouse", OUTAGE_SECONDS, stream[2 * quarter : 3 * quarter], front.stop, front.start, felt)
    run.add_poison(poison_records(rng))
    stop_s3 = lambda: run.stop_service("s3")  # noqa: E731
    run.outage("object storage", OUTAGE_SECONDS, stream[3 * quarter :], stop_s3, run.start_services, ("archive",))

    result = run.verify()
    assert result["kills_survived"] == 10
    assert result["outages_survived"] == ["kafka", "clickhouse", "object storage"]
    assert result["row_mismatches"] == []
    assert result["duplicate_final_rows"] == 0
    assert result["rows_found"] == result["rows_expected"] > 0
    assert result["archive_problems"] == []
    assert result["dead_letters"] == result["dead_letters_expected"] > len(run.poison)
