"""End to end on the real services: Kafka -> worker -> chDB rows, S3 archive, dead-letter topic."""

from __future__ import annotations

import random
import time
from collections import Counter

import orjson
import pytest

from load.generate import StreamShape, generate_stream
from load.report import worker_consumed
from pipeline.operations.topics import load_topic_specs
from pipeline.stores.clickhouse import read_owner
from tests.integration.harness import PipelineEnv, kill_hard
from tests.integration.oracle import INVALID, archive_problems, mismatches

pytestmark = pytest.mark.integration


def _dead_letters(pipeline: PipelineEnv) -> list:
    return pipeline.read_topic("ingestion-deadletter")


def test_stream_lands_in_clickhouse_archive_and_dead_letters(pipeline_env: PipelineEnv):
    produced = list(generate_stream(StreamShape(traces=150, seed=11, invalid=0.02, duplicates=0.03)))
    pipeline_env.produce(produced)
    pipeline_env.drain()

    tables = pipeline_env.tables()
    assert mismatches(tables, produced) == []
    assert archive_problems(pipeline_env.archive(), produced) == []

    letters = _dead_letters(pipeline_env)
    invalid = [r for r in produced if r.value in INVALID]
    assert invalid, "the stream should contain invalid messages"
    assert Counter(m.value for m in letters) == Counter(r.value for r in invalid)
    for message in letters:
        headers = dict(message.headers)
        assert headers["lfpipe.reason"], "every dead letter says why"
        assert headers["lfpipe.topic"] == pipeline_env.topic("ingestion").encode()

    # Archive objects are batched: far fewer objects than events.
    assert len(pipeline_env.objects("raw/")) * 100 < len(produced)


def test_redelivered_stream_changes_nothing(pipeline_env: PipelineEnv):
    produced = list(generate_stream(StreamShape(traces=60, seed=5, invalid=0)))
    pipeline_env.produce(produced)
    pipeline_env.drain()
    first = pipeline_env.tables()
    # A producer that retries everything, and a new consumer group that re-reads the topic from the start.
    pipeline_env.produce(produced)
    pipeline_env.drain(consumer_group=pipeline_env.prefix + "again")
    second = pipeline_env.tables()
    for table in ("traces", "observations", "scores"):
        strip = lambda rows: sorted(  # noqa: E731
            orjson.dumps({k: v for k, v in r.items() if k not in ("updated_at", "event_ts")}) for r in rows
        )
        assert strip(second[table]) == strip(first[table]), table
    assert mismatches(second, produced) == []


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(pipeline_env: PipelineEnv):
    produced = list(generate_stream(StreamShape(traces=500, seed=23, invalid=0.01, duplicates=0.02)))
    pipeline_env.produce(produced)
    rng = random.Random(3)
    kills = 0
    for _ in range(3):
        worker = pipeline_env.start_worker(batch_max_events=150, batch_max_seconds=0.2)
        target = rng.randint(500, 4000)
        deadline = time.monotonic() + 90
        port = None
        while time.monotonic() < deadline and worker.poll() is None:
            owner = read_owner(f"chdb://{pipeline_env.chdb}") or {}
            port = owner.get("web_port") if owner.get("pid") == worker.pid else None
            if port and (worker_consumed(port) or 0) >= target:
                break
            time.sleep(0.05)
        assert worker.poll() is None, pipeline_env.worker_logs()
        kill_hard(worker)
        kills += 1
    pipeline_env.drain()

    assert kills == 3
    tables = pipeline_env.tables()
    assert mismatches(tables, produced) == []
    assert archive_problems(pipeline_env.archive(), produced) == []
    letters = {
        (dict(m.headers)["lfpipe.partition"], dict(m.headers)["lfpipe.offset"]) for m in _dead_letters(pipeline_env)
    }
    assert len(letters) == sum(1 for r in produced if r.value in INVALID)


def test_query_goes_through_the_worker_that_holds_chdb(pipeline_env: PipelineEnv):
    produced = list(generate_stream(StreamShape(traces=20, seed=2, invalid=0)))
    pipeline_env.produce(produced)
    worker = pipeline_env.start_worker()
    try:
        deadline = time.monotonic() + 60
        while (read_owner(f"chdb://{pipeline_env.chdb}") or {}).get("pid") != worker.pid:
            assert time.monotonic() < deadline and worker.poll() is None, pipeline_env.worker_logs()
            time.sleep(0.2)
        answer = None
        while time.monotonic() < deadline:
            result = pipeline_env.cli("query", "--format", "json", "SELECT count() AS n FROM traces FINAL", check=False)
            if result.returncode == 0 and result.stdout.strip():
                answer = orjson.loads(result.stdout.splitlines()[0])
                if answer["n"] == 20:
                    break
            time.sleep(0.5)
        assert answer == {"n": 20}
    finally:
        worker.terminate()
        assert worker.wait(60) == 0, "SIGTERM drains and exits cleanly"


def test_topics_apply_twice_changes_nothing(pipeline_env: PipelineEnv):
    result = pipeline_env.cli("topics", "apply")
    assert "created" not in result.stderr
    assert result.stderr.count("unchanged") == len(load_topic_specs())
    assert "schema is up to date" in pipeline_env.cli("migrate").stderr


def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(pipeline_env: PipelineEnv):
    from pipeline.recordfile import Record

    good = list(generate_stream(StreamShape(traces=10, seed=4, invalid=0)))
    rng = random.Random(9)
    huge = orjson.dumps(
        {
            "id": "big",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "trace-create",
            "project_id": "p",
            "body": {"id": "t", "input": "x" * 4_800_000},
        }
    )
    poison = [
        Record(value=huge, key=b"p:trace:t"),
        Record(value=b"[" * 5000 + b"]" * 5000, key=b"deep"),
        Record(value=bytes(rng.getrandbits(8) for _ in range(2000)), key=b"fuzz"),
        Record(
            value=orjson.dumps({"id": "\r", "timestamp": "x", "type": 1, "project_id": "../../etc", "body": []}),
            key=b"hostile",
        ),
        Record(value=b"", key=None),
    ]
    pipeline_env.produce(good[:40] + poison + good[40:])
    pipeline_env.drain()

    assert mismatches(pipeline_env.tables(), good) == []
    letters = _dead_letters(pipeline_env)
    assert len(letters) == len(poison)
    big = next(m for m in letters if m.key == b"p:trace:t")
    headers = dict(big.headers)
    assert b"exceeds the limit" in headers["lfpipe.reason"]
    assert pipeline_env.objects(headers["lfpipe.payload-object"].decode()) == {
        headers["lfpipe.payload-object"].decode(): huge
    }
