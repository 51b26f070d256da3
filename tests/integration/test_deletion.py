"""A trace-delete event leaves nothing of the trace behind: rows, archived messages, unreferenced media; and
touches nothing else."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from load.generate import StreamShape, generate_stream
from pipeline.producer import event_records
from tests.integration.harness import PipelineEnv
from tests.integration.oracle import INVALID

pytestmark = pytest.mark.integration


def _of_trace(tables: dict, project: str, trace: str) -> dict[str, list]:
    return {
        "traces": [r for r in tables["traces"] if (r["project_id"], r["id"]) == (project, trace)],
        **{
            table: [r for r in tables[table] if (r["project_id"], r["trace_id"]) == (project, trace)]
            for table in ("observations", "scores", "media")
        },
    }


def test_a_deleted_trace_leaves_nothing_behind(pipeline_env: PipelineEnv):
    produced = list(generate_stream(StreamShape(traces=40, seed=3, media=0.5, invalid=0, duplicates=0)))
    pipeline_env.produce(produced)
    pipeline_env.drain()
    before = pipeline_env.tables()
    # The trace with the most media, so some media objects are its alone.
    media_by_trace: dict[tuple[str, str], set[str]] = {}
    for link in before["media"]:
        media_by_trace.setdefault((link["project_id"], link["trace_id"]), set()).add(link["bucket_path"])
    (project, trace), paths = max(media_by_trace.items(), key=lambda item: len(item[1]))
    assert paths and all(_of_trace(before, project, trace).values()), "the trace should have rows in every table"
    objects_before = pipeline_env.objects("media/")

    deletion = {
        "id": "delete-1",
        "timestamp": "2026-11-22T00:00:00Z",
        "type": "trace-delete",
        "project_id": project,
        "body": {"id": trace},
    }
    pipeline_env.produce(list(event_records([deletion])))
    pipeline_env.drain()
    after = pipeline_env.tables()

    assert _of_trace(after, project, trace) == {"traces": [], "observations": [], "scores": [], "media": []}
    for table in ("traces", "observations", "scores", "media"):
        others = [r for r in before[table] if r not in _of_trace(before, project, trace)[table]]
        assert sorted(map(orjson.dumps, after[table])) == sorted(map(orjson.dumps, others)), table
    # The generator names every event of a trace "<trace id>-ev<n>": an oracle independent of the code.
    of_trace = [r for r in produced if orjson.loads(r.value)["id"].startswith(f"{trace}-ev")]
    kept = [r for r in produced if r.value not in INVALID and r not in of_trace]
    assert of_trace
    archived = {(r.partition, r.offset): r.value for r in pipeline_env.archive()}  # repeats dropped by offset
    missing = Counter(r.value for r in kept) - Counter(archived.values())
    extra = Counter(archived.values()) - Counter(r.value for r in kept)
    assert (list(missing), list(extra)) == ([], [])
    # Its media objects are gone unless another live row still references them.
    still_referenced = {link["bucket_path"] for link in after["media"]}
    objects_after = pipeline_env.objects("media/")
    assert set(objects_after) == set(objects_before) - (paths - still_referenced)
    assert paths - still_referenced, "some media belonged to the deleted trace alone"
