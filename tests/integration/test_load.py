"""Load tools on the real stack: a recorded stream round-trips, and the archive replays like a recording."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest

from load.generate import StreamShape, generate_stream
from pipeline.net import free_port
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration
VOLATILE = {"created_at", "updated_at", "event_ts"}


def _rows(pipeline: PipelineEnv) -> dict[str, list[dict]]:
    tables = pipeline.tables()
    return {
        table: sorted(
            ({k: v for k, v in row.items() if k not in VOLATILE} for row in tables[table]),
            key=lambda row: (row["project_id"], row["id"]),
        )
        for table in ("traces", "observations", "scores")
    }


def test_record_then_replay_gives_the_same_rows(pipeline_factory: Callable[[], PipelineEnv], tmp_path):
    source = pipeline_factory()
    produced = list(
        generate_stream(StreamShape(traces=80, seed=31, mix={"agent": 1, "dify": 1, "ragflow": 1}, media=0.05))
    )
    source.produce(produced)
    source.drain()
    recording = tmp_path / "recording.lfr.zst"
    recorded = source.cli("load", "record", str(recording)).stderr
    assert f"recorded {len(produced)} messages" in recorded, recorded

    target = pipeline_factory()
    replayed = target.cli("load", "replay", str(recording)).stderr
    assert f"replayed {len(produced)} messages" in replayed, replayed
    target.drain()
    assert _rows(target) == _rows(source)

    # The raw archive is a recording too; rewritten ids make it a second, separate copy of every entity.
    copy = pipeline_factory()
    copy.cli("load", "replay", source.env["LFPIPE_ARCHIVE_URL"], "--rewrite", "-r1")
    copy.drain()
    rows = _rows(copy)
    assert {len(rows[t]) for t in rows} and all(len(rows[t]) == len(_rows(source)[t]) for t in rows)
    assert all(row["id"].endswith("-r1") and row["project_id"].endswith("-r1") for row in rows["traces"])


def test_report_watches_a_run_and_renders_a_chart(pipeline_env: PipelineEnv, tmp_path):
    port = free_port()
    worker = pipeline_env.start_worker(worker_web_port=port)
    out = tmp_path / "report"
    command = [sys.executable, "-m", "pipeline.cli", "load", "report", "--out", str(out)]
    reporter = subprocess.Popen(
        [*command, "--worker-port", str(port), "--until-idle", "3", "--max-seconds", "200"],
        env=pipeline_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "watching" in reporter.stderr.readline()  # the report has its starting point
        produced = list(generate_stream(StreamShape(traces=60, seed=5, invalid=0.05, duplicates=0.05)))
        pipeline_env.produce(produced)
        stdout, stderr = reporter.communicate(timeout=240)
    finally:
        worker.terminate()
        worker.wait(60)
    assert reporter.returncode == 0, stderr
    assert worker.returncode == 0, pipeline_env.worker_logs()

    report = orjson.loads((out / "report.json").read_bytes())
    assert report["produced"] == report["committed"] == len(produced)
    assert report["final_lag"] == 0
    distinct_letters = {(m.partition, m.offset) for m in pipeline_env.read_topic("ingestion-deadletter")}
    assert report["dead_letters"] == len(distinct_letters) > 0
    tables = pipeline_env.tables()
    assert report["rows"] == {table: len(tables[table]) for table in ("traces", "observations", "scores")}
    # Every message was produced after the worker started and is durable, so the histogram saw them all.
    assert 0 < report["latency_p50_seconds"] <= report["latency_p99_seconds"] < 60
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    assert "committed_per_second" in stdout
