"""The archive is the source of truth: a rebuild from it equals the live tables, into a fresh database and
in place (idempotently)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest

from load.generate import StreamShape, generate_stream
from tests.integration.harness import DUMP_SCRIPT, PipelineEnv

pytestmark = pytest.mark.integration
# Set when a row is written, not derived from the events: a rebuild writes them anew.
VOLATILE = {"created_at", "updated_at", "event_ts"}
TABLES = ("traces", "observations", "scores", "media")


def _dump(pipeline: PipelineEnv, database: str = "") -> dict[str, list[bytes]]:
    url = pipeline.env["LFPIPE_CLICKHOUSE_URL"] + (f"/{database}" if database else "")
    result = subprocess.run([sys.executable, str(DUMP_SCRIPT), url], capture_output=True, timeout=120, check=True)
    tables = orjson.loads(result.stdout)
    return {
        table: sorted(
            orjson.dumps({k: v for k, v in row.items() if k not in VOLATILE}, option=orjson.OPT_SORT_KEYS)
            for row in tables[table]
        )
        for table in TABLES
    }


def test_rebuild_from_the_archive_equals_the_live_tables(pipeline_factory: Callable[..., PipelineEnv]):
    pipeline = pipeline_factory(shared_clickhouse=True)
    shape = StreamShape(traces=120, seed=13, media=0.1, duplicates=0.05, out_of_order=0.1, invalid=0.01)
    pipeline.produce(list(generate_stream(shape)))
    pipeline.drain()
    live = _dump(pipeline)
    assert all(live[table] for table in TABLES)

    fresh = pipeline.cli("rebuild", "--database", "rebuilt")
    assert "rebuilt" in fresh.stderr, fresh.stderr
    assert _dump(pipeline, "rebuilt") == live

    # In place: the same rows again, nothing added or changed.
    pipeline.cli("rebuild")
    assert _dump(pipeline) == live

    # One project only, into another database: exactly that project's rows.
    project = orjson.loads(live["traces"][0])["project_id"]
    pipeline.cli("rebuild", "--project", project, "--database", "one_project")
    only = _dump(pipeline, "one_project")
    for table in TABLES:
        assert only[table] == [row for row in live[table] if orjson.loads(row)["project_id"] == project], table
