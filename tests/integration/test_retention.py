"""Retention on the real stack: an expired project loses its rows, archived messages and media; another
project keeps everything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from load.generate import StreamShape, generate_stream
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration
TABLES = ("traces", "observations", "scores", "media")


def test_retention_removes_an_expired_project_and_nothing_else(pipeline_env: PipelineEnv, tmp_path):
    produced = list(generate_stream(StreamShape(traces=40, seed=6, projects=2, media=0.4, invalid=0)))
    pipeline_env.produce(produced)
    pipeline_env.drain()
    before = pipeline_env.tables()
    projects = sorted({row["project_id"] for row in before["traces"]})
    assert len(projects) == 2
    expired, kept = projects
    media_before = pipeline_env.objects("media/")
    assert any(key.startswith(f"media/{expired}/") for key in media_before)
    assert any(key.startswith(f"media/{kept}/") for key in media_before)

    # Three hours from now, a retention of 0 days covers every archive hour written so far; the other project's
    # retention is 30 days longer than its oldest event is old, whenever the test runs.
    as_of = datetime.now(UTC) + timedelta(hours=3)
    oldest = min(_event_times(produced, kept))
    kept_days = (as_of - oldest).days + 30
    (tmp_path / "retention.toml").write_text(f'[projects]\n"{expired}" = 0\n"{kept}" = {kept_days}\n')
    result = pipeline_env.cli(
        "retention", "apply", "--policy", str(tmp_path / "retention.toml"), "--as-of", as_of.isoformat()
    )
    assert "retention applied to 2 projects" in result.stderr, result.stderr

    after = pipeline_env.tables()
    for table in TABLES:
        assert not [row for row in after[table] if row["project_id"] == expired], table
        mine = [orjson.dumps(row) for row in before[table] if row["project_id"] == kept]
        assert sorted(orjson.dumps(row) for row in after[table]) == sorted(mine), table
    archived_projects = {orjson.loads(record.value)["project_id"] for record in pipeline_env.archive()}
    assert archived_projects == {kept}
    kept_messages = sorted(r.value for r in produced if orjson.loads(r.value)["project_id"] == kept)
    assert sorted(record.value for record in pipeline_env.archive()) == kept_messages
    media_after = pipeline_env.objects("media/")
    assert media_after == {key: data for key, data in media_before.items() if key.startswith(f"media/{kept}/")}

    # Applying it again removes nothing more.
    again = pipeline_env.cli(
        "retention", "apply", "--policy", str(tmp_path / "retention.toml"), "--as-of", as_of.isoformat()
    )
    said = " ".join(again.stderr.split())  # the console wraps long lines
    assert "0 archived messages removed from 0 objects, 0 media objects deleted" in said, said


def _event_times(records: list, project: str) -> list[datetime]:
    """Every time a project's events carry (envelope and body times): what its rows are dated by."""
    times = []
    for record in records:
        event = orjson.loads(record.value)
        if event["project_id"] == project:
            body = event["body"]
            stamps = [event["timestamp"], body.get("timestamp"), body.get("startTime"), body.get("endTime")]
            times += [datetime.fromisoformat(stamp) for stamp in stamps if isinstance(stamp, str)]
    return times
