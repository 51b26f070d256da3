"""Dead letters on the real stack: listed with their reasons, replayed after a fix, each replayed once."""

from __future__ import annotations

import json

import orjson
import pytest

from pipeline.producer import event_records
from pipeline.recordfile import Record
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration


def _score(n: int) -> dict:
    return {
        "id": f"ev-score-{n}",
        "timestamp": "2026-11-01T00:00:00.000Z",
        "type": "score-create",
        "project_id": "proj",
        "body": {"id": f"score-{n}", "name": "x", "value": n, "traceId": "t", "configId": "cfg"},
    }


def test_dead_letters_are_listed_and_replayed_after_a_fix(pipeline_env: PipelineEnv, tmp_path):
    trace = {
        "id": "ev-trace",
        "timestamp": "2026-11-01T00:00:00.000Z",
        "type": "trace-create",
        "project_id": "proj",
        "body": {"id": "t", "name": "chat"},
    }
    # Scores that name a score config nobody has published yet, and a message that no fix will mend.
    records = [*event_records([trace, _score(1), _score(2)]), Record(value=b"{not json", key=b"broken")]
    pipeline_env.produce(records)
    pipeline_env.drain()
    assert pipeline_env.tables()["scores"] == []

    listed = pipeline_env.cli("dead-letters", "list", "--format", "json")
    assert "failed_semantic_check: 2" in listed.stderr and "malformed_json: 1" in listed.stderr, listed.stderr
    letters = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(letter["key"] for letter in letters) == ["broken", "proj:score:score-1", "proj:score:score-2"]
    assert all("score config 'cfg' does not exist" in x["reason"] for x in letters if x["key"] != "broken")

    (tmp_path / "config.json").write_text(json.dumps({"id": "cfg", "name": "helpfulness", "data_type": "NUMERIC"}))
    pipeline_env.cli("score-configs", "add", str(tmp_path / "config.json"), "--project", "proj")
    replayed = pipeline_env.cli("dead-letters", "replay", "--kind", "failed_semantic_check")
    assert "replayed 2 dead letters" in replayed.stderr, replayed.stderr
    pipeline_env.drain()
    scores = pipeline_env.tables()["scores"]
    assert sorted((row["id"], row["name"], row["value"]) for row in scores) == [
        ("score-1", "helpfulness", 1.0),
        ("score-2", "helpfulness", 2.0),
    ]
    # The replay group remembers its position: a second run sends nothing again.
    again = pipeline_env.cli("dead-letters", "replay", "--kind", "failed_semantic_check")
    assert "replayed 0 dead letters" in again.stderr, again.stderr
