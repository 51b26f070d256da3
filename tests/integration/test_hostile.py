"""One message must never stop or expose the pipeline: regressions for the five ways it did, on the real stack.

Healthy means: the worker exits 0 (twice: a restart does not crash again either), the valid neighbours are
stored, and each bad message is a dead letter with a reason a user understands.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.net import free_port
from pipeline.operations.dead_letters import ParkedLetter
from pipeline.producer import event_records, message_key
from pipeline.recordfile import Record
from pipeline.runtime.query import socket_path
from pipeline.stores.clickhouse import read_owner
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def _trace(project: str, trace_id: str, timestamp: str = "2026-11-01T00:00:00Z", **body: Any) -> dict[str, Any]:
    return {
        "id": f"ev-{trace_id}",
        "timestamp": timestamp,
        "type": "trace-create",
        "project_id": project,
        "body": {"id": trace_id, **body},
    }


def _nested_record(project: str, trace_id: str, field: str, depth: int) -> Record:
    """A trace-create whose ``field`` nests ``depth`` objects (written by hand: orjson stops at 254 levels)."""
    marker = "NESTED-VALUE"
    event = orjson.dumps(_trace(project, trace_id, **{field: marker}))
    nested = b'{"a":' * (depth - 1) + b'{"leaf":true}' + b"}" * (depth - 1)
    return Record(event.replace(f'"{marker}"'.encode(), nested), key=f"{project}:trace:{trace_id}".encode())


def _letters(pipeline: PipelineEnv) -> dict[str, dict[str, str]]:
    """Dead letters by their original partition and offset: headers as text."""
    letters = [
        {k: v.decode(errors="replace") for k, v in m.headers} for m in pipeline.read_topic("ingestion-deadletter")
    ]
    return {f"{headers['lfpipe.partition']}/{headers['lfpipe.offset']}": headers for headers in letters}


def _drain_twice(pipeline: PipelineEnv) -> None:
    pipeline.drain()
    pipeline.drain()  # a restart over the same topic must not crash either


def test_a_backfill_over_more_than_100_months_is_stored_and_rebuilt(pipeline_env: PipelineEnv):
    months = [datetime(1950 + n // 12, n % 12 + 1, 15, tzinfo=UTC).isoformat() for n in range(101)]
    events = [_trace("history", f"old-{n}", month) for n, month in enumerate(months)]
    events.append(_trace("history", "now"))
    pipeline_env.produce(list(event_records(events)))
    _drain_twice(pipeline_env)
    stored = {row["id"] for row in pipeline_env.tables()["traces"]}
    assert stored == {event["body"]["id"] for event in events}
    assert pipeline_env.read_topic("ingestion-deadletter") == []

    rebuilt = pipeline_env.cli("rebuild", "--database", "rebuilt")
    assert "102 rows" in " ".join(rebuilt.stderr.split()), rebuilt.stderr
    dump = pipeline_env.cli("query", "--format", "json", "SELECT id FROM rebuilt.traces FINAL")
    assert {orjson.loads(line)["id"] for line in dump.stdout.splitlines()} == stored


def test_values_nested_too_deep_are_dead_letters_that_say_so(pipeline_env: PipelineEnv):
    deep = [_nested_record("p", "deep-metadata", "metadata", 300), _nested_record("p", "deep-input", "input", 300)]
    before, after = event_records([_trace("p", "before"), _trace("p", "after")])
    pipeline_env.produce([before, *deep, after])
    _drain_twice(pipeline_env)
    assert sorted(row["id"] for row in pipeline_env.tables()["traces"]) == ["after", "before"]
    letters = sorted(_letters(pipeline_env).values(), key=lambda headers: headers["lfpipe.reason"])
    assert [headers["lfpipe.reason-kind"] for headers in letters] == ["invalid_body", "invalid_body"]
    assert "body.input nests arrays and objects more than 200 levels deep" in letters[0]["lfpipe.reason"]
    assert "body.metadata nests arrays and objects more than 200 levels deep" in letters[1]["lfpipe.reason"]


@pytest.mark.parametrize("archive", ["s3", "folder"])
def test_project_ids_dot_and_dot_dot_are_refused_and_keys_stay_inside(pipeline_env: PipelineEnv, archive, tmp_path):
    if archive == "folder":
        pipeline_env.env["LFPIPE_ARCHIVE_URL"] = str(tmp_path / "archive")
    image = "data:image/png;base64," + base64.b64encode(PNG).decode()
    events = [_trace(project, f"t-{n}", input=image) for n, project in enumerate([".", "..", "ok"])]
    pipeline_env.produce(list(event_records(events)))
    _drain_twice(pipeline_env)
    assert [row["project_id"] for row in pipeline_env.tables()["traces"]] == ["ok"]
    letters = _letters(pipeline_env).values()
    assert sorted(headers["lfpipe.reason-kind"] for headers in letters) == ["invalid_envelope"] * 2
    assert all("starting with a letter or digit" in headers["lfpipe.reason"] for headers in letters)
    if archive == "folder":
        images = [path.relative_to(tmp_path).as_posix() for path in (tmp_path / "archive").rglob("*.png")]
        assert len(images) == 1 and images[0].startswith("archive/media/ok/"), images


def test_a_message_with_a_ten_megabyte_header_becomes_a_sendable_letter(pipeline_env: PipelineEnv):
    headers = [("x-junk", bytes(10_000_000)), ("x-langfuse-sdk-name", b"python")]

    async def send() -> None:
        # A producer that allows what the ingestion topic accepts: zeros compress to almost nothing.
        producer = AIOKafkaProducer(
            bootstrap_servers=pipeline_env.bootstrap, compression_type="zstd", max_request_size=20_000_000
        )
        await producer.start()
        try:
            await producer.send_and_wait(pipeline_env.topic("ingestion"), b"{not json", key=b"k", headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())
    pipeline_env.produce(list(event_records([_trace("p", "neighbour")])))
    _drain_twice(pipeline_env)
    assert [row["id"] for row in pipeline_env.tables()["traces"]] == ["neighbour"]
    (message,) = pipeline_env.read_topic("ingestion-deadletter")
    letter = ParkedLetter(message.key, message.value, list(message.headers), message.timestamp, 0, message.offset)
    assert letter.kind == "malformed_json" and letter.header("lfpipe.spilled") == "headers"
    assert "x-junk" not in dict(message.headers)
    (payload,) = pipeline_env.objects(letter.payload_object or "none").values()
    original = letter.original(payload)
    assert original.value == b"{not json" and original.key == b"k" and list(original.headers) == headers


def test_a_message_keyed_against_the_rule_is_a_dead_letter(pipeline_env: PipelineEnv):
    good, wrong = _trace("p", "good"), _trace("p", "wrong")
    pipeline_env.produce([Record(orjson.dumps(good), message_key(good)), Record(orjson.dumps(wrong), b"p:trace:x")])
    _drain_twice(pipeline_env)
    assert [row["id"] for row in pipeline_env.tables()["traces"]] == ["good"]
    (headers,) = _letters(pipeline_env).values()
    assert headers["lfpipe.reason-kind"] == "wrong_key" and "'p:trace:wrong'" in headers["lfpipe.reason"]


HOSTILE_SQL = {
    "DROP TABLE scores": "only a single SELECT",
    "TRUNCATE TABLE traces": "only a single SELECT",
    "SELECT file('/etc/passwd')": "function file",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')": "table functions",
    "INSERT INTO FUNCTION file('/tmp/lfpipe-x', 'LineAsString') SELECT 'x'": "only a single SELECT",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')": "table functions",
    "SELECT 1; DROP TABLE scores": "one statement",
    "SELECT count() FROM traces SETTINGS readonly = 0": "readonly",
}


def test_query_is_read_only_and_served_only_to_the_local_user(pipeline_env: PipelineEnv):
    pipeline_env.produce(list(event_records([_trace("p", "t")])))
    port = free_port()
    worker = pipeline_env.start_worker(worker_web_port=port)
    try:
        deadline = time.monotonic() + 60
        while (read_owner(f"chdb://{pipeline_env.chdb}") or {}).get("pid") != worker.pid:
            assert time.monotonic() < deadline and worker.poll() is None, pipeline_env.worker_logs()
            time.sleep(0.2)
        pipeline_env.wait_for_lag_zero(60)
        path = socket_path(pipeline_env.chdb)
        while not path.exists():
            assert time.monotonic() < deadline, "the query socket did not appear"
            time.sleep(0.2)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for sql, said in HOSTILE_SQL.items():
            result = pipeline_env.cli("query", sql, check=False)
            assert result.returncode != 0 and said in " ".join(result.stderr.split()), (sql, result.stderr)
        answer = pipeline_env.cli("query", "--format", "json", "SELECT count() AS n FROM traces FINAL")
        assert orjson.loads(answer.stdout) == {"n": 1}
        # Nothing on the TCP port runs SQL, whatever the Origin.
        request = urllib.request.Request(f"http://127.0.0.1:{port}/query", data=b"DROP TABLE scores", method="POST")
        request.add_header("Origin", "http://evil.example")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 404
    finally:
        worker.terminate()
    assert worker.wait(60) == 0, pipeline_env.worker_logs()
    assert not path.exists(), "the socket is removed on exit"
    assert len(pipeline_env.tables()["traces"]) == 1
