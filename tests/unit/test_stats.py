"""The worker's run summary."""

from __future__ import annotations

import time

import orjson

from pipeline.recordfile import Record
from pipeline.runtime.batch import BatchOutput
from pipeline.runtime.stats import RunStats


def test_a_worker_that_completed_no_batch_reports_zero_seconds_not_a_negative_time():
    stats = RunStats()
    stats.batch_started()  # fetched and processed, but stopped before it was durable
    summary = stats.summary()
    assert summary["seconds"] == 0.0 and summary["events_per_second"] is None
    assert summary["latency_p50_seconds"] is None and summary["stage_us_per_event"] == {}


def test_latencies_and_rates_come_from_durable_batches():
    stats = RunStats()
    stats.batch_started()
    now_ms = int(time.time() * 1000)
    out = BatchOutput()
    out.counts.update(consumed=4, processed=4)
    stats.stage_seconds["prepare"] += 0.004
    stats.batch_durable([Record(b"{}", timestamp_ms=now_ms - 1000 * n) for n in range(4)], out, now_ms)
    summary = stats.summary()
    assert summary["consumed"] == 4 and summary["seconds"] >= 0
    assert summary["latency_p50_seconds"] == 2.0 and summary["latency_p99_seconds"] == 3.0
    assert summary["stage_us_per_event"] == {"prepare": 1000.0}


def test_the_summary_of_a_processed_batch_is_json():
    from pipeline.outcomes import Outcome
    from tests.unit.helpers import envelope, run_batch

    stats = RunStats()
    stats.batch_started()
    out = run_batch([envelope("trace-create", {"id": "t"})])
    assert out.counts[Outcome.PROCESSED] == 1
    stats.batch_durable([], out, time.time() * 1000)
    assert orjson.loads(orjson.dumps(stats.summary()))["processed"] == 1
