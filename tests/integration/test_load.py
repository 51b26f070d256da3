"""Load tools on the real stack: a recorded stream round-trips, and the archive replays like a recording."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from load.generate import StreamShape, generate_stream
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
