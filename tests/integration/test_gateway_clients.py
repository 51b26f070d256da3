"""The real clients through the gateway and a worker into the stored rows (FINAL): Langfuse SDK 2.x (batch API,
with a Dify-shaped run), SDK 5.x (OpenTelemetry, with a RAGFlow-shaped run), the OpenTelemetry SDK with gen_ai
attributes; media uploaded by the SDKs; re-sent requests that change nothing."""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.integration.gateway import GatewayEnv, start_gateway
from tests.integration.harness import PipelineEnv, create_pipeline

pytestmark = pytest.mark.integration
IMAGE = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)  # one image, uploaded by both SDKs: one object
OTLP_JSON_TRACE = uuid.uuid4().hex


def resend_batch(run: str) -> dict[str, Any]:
    """What the v2 SDK re-sends after a 207 with errors: the same envelope ids and bodies."""
    when = "2026-01-01T00:00:00.000Z"
    return {
        "batch": [
            {
                "id": f"rs-{run}-1",
                "timestamp": when,
                "type": "trace-create",
                "body": {"id": f"rs-{run}", "name": "resent"},
            },
            {
                "id": f"rs-{run}-2",
                "timestamp": when,
                "type": "generation-create",
                "body": {
                    "id": f"rs-{run}-gen",
                    "traceId": f"rs-{run}",
                    "model": "gpt-4o",
                    "usageDetails": {"input": 10},
                },
            },
            {
                "id": f"rs-{run}-3",
                "timestamp": when,
                "type": "span-create",
                "body": {"traceId": f"rs-{run}"},
            },  # no id: 400
        ]
    }


def otlp_json_export() -> dict[str, Any]:
    span = {
        "traceId": OTLP_JSON_TRACE,
        "spanId": "00f067aa0ba902b7",
        "name": "json export",
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225601000000000",
        "attributes": [
            {"key": "langfuse.observation.type", "value": {"stringValue": "generation"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
        ],
    }
    return {
        "resourceSpans": [
            {"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "custom"}, "spans": [span]}]}
        ]
    }


def send_repeatable(gateway: GatewayEnv, run: str) -> None:
    assert gateway.post_json("/api/public/ingestion", resend_batch(run)).status == 207
    assert gateway.post_json("/api/public/otel/v1/traces", otlp_json_export()).json() == {}


@pytest.fixture(scope="module")
def landed(stack: tuple, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    stack_dir, state = stack
    pipeline = create_pipeline(stack_dir, state, tmp_path_factory.mktemp("gateway-clients"))
    gateway = start_gateway(pipeline)
    try:
        found = _land(pipeline, gateway)
    except BaseException:
        gateway.stop()  # a failed setup must not leave the gateway running
        raise
    yield found
    assert gateway.stop() == 0, gateway.logs()


def _land(pipeline: PipelineEnv, gateway: GatewayEnv) -> dict[str, Any]:
    """Every client's run through the gateway and a worker, then the same requests again."""
    run = uuid.uuid4().hex[:8]
    image = {"IMAGE_HEX": IMAGE.hex(), "RUN_ID": run}
    found: dict[str, Any] = {"run": run, "gateway": gateway}
    found["v2"] = gateway.run_client("langfuse-v2", "sdk_v2.py", image)
    found["v5"] = gateway.run_client("langfuse-v5", "sdk_v5.py", image)
    found["otel"] = gateway.run_client("otel", "otel_genai.py")
    send_repeatable(gateway, run)
    pipeline.drain()
    found["tables"] = pipeline.tables()
    send_repeatable(gateway, run)  # the clients' retries, after everything was stored
    pipeline.drain()
    found["again"] = pipeline.tables()
    found["objects"] = pipeline.objects("media/")
    return found


def rows(tables: dict, table: str, **where: Any) -> list[dict[str, Any]]:
    return [row for row in tables[table] if all(row.get(k) == v for k, v in where.items())]


def one(tables: dict, table: str, **where: Any) -> dict[str, Any]:
    found = rows(tables, table, **where)
    assert len(found) == 1, (table, where, found)
    return found[0]


def test_sdk_v2_trace_with_nested_priced_generation(landed):
    tables, trace_id = landed["tables"], landed["v2"]["trace"]
    trace = one(tables, "traces", id=trace_id)
    assert (trace["name"], trace["user_id"], trace["session_id"], trace["tags"]) == (
        "v2 chat",
        "user-7",
        f"session-{landed['run']}",
        ["sdk-v2"],
    )
    assert orjson.loads(trace["output"]) == {"answer": "a red square"} and trace["project_id"] == "gw-project"
    span = one(tables, "observations", id=f"{trace_id}-retrieve")
    generation = one(tables, "observations", id=f"{trace_id}-llm")
    assert span["parent_observation_id"] is None and generation["parent_observation_id"] == span["id"]
    assert generation["type"] == "GENERATION" and generation["internal_model_id"]
    assert generation["usage_details"] == {"input": 1000, "output": 200, "total": 1200}
    # gpt-4o's default prices: 2.5 and 10 USD per million tokens.
    assert Decimal(generation["total_cost"]) == Decimal("0.0025") + Decimal("0.002")


def test_sdk_v2_scores_of_each_type(landed):
    tables, trace_id = landed["tables"], landed["v2"]["trace"]
    numeric = one(tables, "scores", id=f"{trace_id}-s-num")
    categorical = one(tables, "scores", id=f"{trace_id}-s-cat")
    boolean = one(tables, "scores", id=f"{trace_id}-s-bool")
    assert (numeric["data_type"], numeric["value"], numeric["comment"]) == ("NUMERIC", 0.75, "ok")
    assert (categorical["data_type"], categorical["string_value"]) == ("CATEGORICAL", "friendly")
    assert (boolean["data_type"], boolean["value"], boolean["observation_id"]) == ("BOOLEAN", 1.0, f"{trace_id}-llm")
    assert numeric["ingestion_api_key"] == landed["gateway"].public_key and numeric["ingestion_sdk_name"] == "python"


def test_dify_shaped_run(landed):
    tables, trace_id = landed["tables"], landed["v2"]["dify_trace"]
    assert one(tables, "traces", id=trace_id)["name"] == "workflow"
    nodes = rows(tables, "observations", trace_id=trace_id, parent_observation_id=f"{trace_id}-wf")
    assert sorted(n["name"] for n in nodes) == ["end", "knowledge-retrieval", "llm", "start"]
    assert all(n["end_time"] is not None for n in rows(tables, "observations", trace_id=trace_id))
    assert one(tables, "observations", id=f"{trace_id}-node-2")["level"] == "ERROR"
    llm = one(tables, "observations", id=f"{trace_id}-llm")
    assert llm["usage_details"] == {"input": 120, "output": 30, "total": 150}
    assert Decimal(llm["total_cost"]) == Decimal("0.0009")  # the legacy totalCost Dify sends wins over prices
    suggest = one(tables, "observations", id=f"{trace_id}-suggest")
    assert suggest["usage_details"] == {"input": 40, "output": 12, "total": 52}  # CHARACTERS units kept as counts


def test_sdk_v5_otel_trace_generation_and_scores(landed):
    tables, v5 = landed["tables"], landed["v5"]
    trace = one(tables, "traces", id=v5["trace"])
    assert (trace["name"], trace["user_id"], trace["session_id"]) == ("v5 trace", "user-5", "session-v5")
    generation = one(tables, "observations", id=v5["generation"])
    assert generation["type"] == "GENERATION" and generation["provided_model_name"] == "gpt-4o"
    assert generation["usage_details"]["input"] == 1000 and generation["usage_details"]["output"] == 100
    assert Decimal(generation["total_cost"]) == Decimal("0.5")  # the cost the SDK sent
    assert one(tables, "observations", id=generation["parent_observation_id"])["name"] == "v5 agent"
    kinds = {row["id"].rsplit("-", 1)[1]: row for row in rows(tables, "scores", trace_id=v5["trace"])}
    assert set(kinds) == {"num", "bool", "cat", "text"}
    assert (
        kinds["num"]["value"],
        kinds["bool"]["value"],
        kinds["cat"]["string_value"],
        kinds["text"]["string_value"],
    ) == (0.9, 1.0, "neutral", "reads well")
    assert kinds["bool"]["observation_id"] == v5["generation"]


def test_ragflow_shaped_run(landed):
    tables = landed["tables"]
    for call in landed["v5"]["ragflow"]:
        observation = one(tables, "observations", id=call["id"])
        # Not the OpenAI shape, so Langfuse keeps the raw key, and total is the sum of the others.
        assert observation["usage_details"] == {"total_tokens": call["tokens"], "total": call["tokens"]}
        assert one(tables, "traces", id=call["trace"])["session_id"] == "ragflow-chat"


def test_otel_sdk_gen_ai_spans(landed):
    tables, ids = landed["tables"], landed["otel"]
    chat = one(tables, "observations", id=ids["chat"])
    assert chat["type"] == "GENERATION" and chat["provided_model_name"] == "gpt-4o-mini"
    assert chat["usage_details"] == {"input": 2000, "output": 500, "total": 2500}
    assert chat["total_cost"] is not None and Decimal(chat["total_cost"]) > 0  # priced from the model table
    assert one(tables, "observations", id=ids["failing"])["level"] == "ERROR"
    assert one(tables, "traces", id=ids["trace"])["environment"] == "staging"


def test_sdk_uploaded_images_are_one_object_linked_by_complete_rows(landed):
    media_id = base64.urlsafe_b64encode(hashlib.sha256(IMAGE).digest()).decode()[:22]
    key = f"media/gw-project/{media_id}.png"
    assert landed["objects"] == {key: IMAGE}
    links = rows(landed["tables"], "media", media_id=media_id)
    assert {(row["trace_id"], row["observation_id"], row["field"]) for row in links} == {
        (landed["v2"]["trace"], f"{landed['v2']['trace']}-llm", "input"),
        (landed["v5"]["trace"], landed["v5"]["generation"], "input"),
    }
    assert all(
        (row["bucket_path"], row["content_length"], row["content_type"]) == (key, len(IMAGE), "image/png")
        for row in links
    )
    described = landed["gateway"].request("GET", f"/api/public/media/{media_id}").json()
    assert (described["contentType"], described["contentLength"]) == ("image/png", len(IMAGE))
    with urllib.request.urlopen(described["url"], timeout=30) as download:
        assert download.read() == IMAGE


def test_resent_requests_change_no_row(landed):
    before, after = landed["tables"], landed["again"]
    assert one(before, "traces", id=f"rs-{landed['run']}")["name"] == "resent"
    assert one(before, "observations", trace_id=OTLP_JSON_TRACE)["usage_details"] == {"input": 42, "total": 42}
    for table in ("traces", "observations", "scores", "media"):
        assert after[f"{table}_versions"] == before[f"{table}_versions"], table
        assert sorted(map(orjson.dumps, after[table])) == sorted(map(orjson.dumps, before[table])), table
