"""A store that refuses a row for good never stalls a partition: the refused entity's events become dead letters
(``rejected_by_store``, with the store's message), everything else in the batch is written, and the worker goes
on. ClickHouse here is the test front over chDB, refusing any insert that carries a marker value the way a
server refuses a value its column cannot hold."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from load.generate import StreamShape, generate_stream
from load.report import metric_value, scrape
from pipeline.net import free_port
from pipeline.recordfile import Record
from tests.integration.harness import PipelineEnv
from tests.integration.oracle import archive_problems, mismatches

pytestmark = pytest.mark.integration
MARKER = "REFUSED-BY-THE-STORE"


def test_a_refused_row_is_a_dead_letter_and_its_neighbours_are_stored(pipeline_factory: Callable[..., PipelineEnv]):
    pipeline = pipeline_factory(refuse_value=MARKER)
    produced = list(generate_stream(StreamShape(traces=40, seed=4, invalid=0, duplicates=0)))
    refused = Record(
        value=orjson.dumps(
            {
                "id": "refused-event",
                "timestamp": "2026-11-01T00:00:00Z",
                "type": "trace-create",
                "project_id": "project-0",
                "body": {"id": "refused-trace", "name": MARKER},
            }
        ),
        key=b"project-0:trace:refused-trace",
    )
    half = len(produced) // 2
    pipeline.produce([*produced[:half], refused, *produced[half:]])
    port = free_port()
    worker = pipeline.start_worker(worker_web_port=port)
    try:
        pipeline.wait_for_lag_zero(timeout=120)
        metrics = scrape(port) or ""
        assert metric_value(metrics, "lfpipe_store_refused_entities_total", 'sink="clickhouse"') == 1
        assert (
            metric_value(metrics, "lfpipe_dead_letters_total", 'event_type="trace-create",reason="rejected_by_store"')
            == 1
        )
    finally:
        worker.terminate()
    assert worker.wait(60) == 0, pipeline.worker_logs()

    (letter,) = pipeline.read_topic("ingestion-deadletter")
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["lfpipe.reason-kind"] == "rejected_by_store"
    assert "TYPE_MISMATCH" in headers["lfpipe.reason"] and "traces" in headers["lfpipe.reason"]
    assert letter.value == refused.value and letter.key == refused.key
    tables = pipeline.tables()
    assert not [row for row in tables["traces"] if row["id"] == "refused-trace"]
    assert mismatches(tables, produced) == []
    assert archive_problems(pipeline.archive(), produced) == []
