"""Models and score configs published at run time reach a running worker without a restart."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import orjson
import pytest

from pipeline.producer import event_records
from pipeline.stores.clickhouse import read_owner
from tests.integration.harness import PipelineEnv

pytestmark = pytest.mark.integration

MODEL = {
    "name": "acme-llm",
    "match": "(?i)^acme-llm$",
    "tokenizer": None,
    "tiers": [
        {
            "id": "acme-default",
            "name": "Standard",
            "priority": 0,
            "default": True,
            "conditions": [],
            "prices": {"input": "0.000002", "output": "0.00001"},
        }
    ],
}


def _generation(n: int) -> dict:
    return {
        "id": f"ev-{n}",
        "timestamp": "2026-11-01T00:00:00.000Z",
        "type": "generation-create",
        "project_id": "proj",
        "body": {"id": f"gen-{n}", "traceId": "t", "model": "acme-llm", "usage": {"input": 1000, "output": 100}},
    }


def _wait_for_row(pipeline: PipelineEnv, sql: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = pipeline.cli("query", "--format", "json", sql, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return orjson.loads(result.stdout.splitlines()[0])
        time.sleep(0.5)
    raise AssertionError(f"no row for {sql!r}:\n{pipeline.worker_logs()}")


def test_model_and_score_config_added_while_the_worker_runs(pipeline_env: PipelineEnv, tmp_path):
    worker = pipeline_env.start_worker(batch_max_seconds=0.2)
    try:
        deadline = time.monotonic() + 60
        while (read_owner(f"chdb://{pipeline_env.chdb}") or {}).get("pid") != worker.pid:
            assert time.monotonic() < deadline and worker.poll() is None, pipeline_env.worker_logs()
            time.sleep(0.2)
        pipeline_env.produce(list(event_records([_generation(1)])))
        before = _wait_for_row(pipeline_env, "SELECT total_cost FROM observations FINAL WHERE id = 'gen-1'")
        assert before["total_cost"] is None

        (tmp_path / "model.json").write_text(json.dumps({"id": "acme", **MODEL}))
        pipeline_env.cli("models", "add", str(tmp_path / "model.json"), "--project", "proj")
        (tmp_path / "config.json").write_text(
            json.dumps({"id": "cfg", "name": "helpfulness", "data_type": "NUMERIC", "max_value": 10})
        )
        pipeline_env.cli("score-configs", "add", str(tmp_path / "config.json"), "--project", "proj")
        time.sleep(2)  # the feed polls every second

        score = {
            "id": "ev-s",
            "timestamp": "2026-11-01T00:00:00.000Z",
            "type": "score-create",
            "project_id": "proj",
            "body": {"id": "s", "name": "x", "value": 4, "traceId": "t", "configId": "cfg"},
        }
        pipeline_env.produce(list(event_records([_generation(2), score])))
        after = _wait_for_row(pipeline_env, "SELECT total_cost FROM observations FINAL WHERE id = 'gen-2'")
        # 1000 x 0.000002 + 100 x 0.00001
        assert Decimal(after["total_cost"]) == Decimal("0.003")
        named = _wait_for_row(pipeline_env, "SELECT name FROM scores FINAL WHERE id = 's'")
        assert named["name"] == "helpfulness"
    finally:
        worker.terminate()
        assert worker.wait(60) == 0
