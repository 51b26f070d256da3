"""The gateway's HTTP contract at its corners, on a real gateway process and Kafka: keys (wrong, revoked,
public-key-only), both header spellings, limits, malformed bodies, the OTLP replies, scores, media, metrics;
and what reaches Kafka (key rule, partition, attribution, dead letters)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.operations.topics import load_topic_specs
from tests.integration.gateway import GatewayEnv, start_gateway
from tests.integration.harness import create_pipeline

pytestmark = pytest.mark.integration
WHEN = "2026-01-01T00:00:00.000Z"
OTEL_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def gateway(stack: tuple, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayEnv]:
    stack_dir, state = stack
    pipeline = create_pipeline(stack_dir, state, tmp_path_factory.mktemp("gateway-http"))
    pipeline.env["LFPIPE_GATEWAY_MAX_OTEL_BYTES"] = str(OTEL_LIMIT)
    gateway = start_gateway(pipeline, project="http-project")
    yield gateway
    assert gateway.stop() == 0, gateway.logs()


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"batch": list(events)}


def trace_event(event_id: str, trace_id: str, **body: Any) -> dict[str, Any]:
    return {"id": event_id, "timestamp": WHEN, "type": "trace-create", "body": {"id": trace_id, **body}}


def basic(public: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{public}:{secret}".encode()).decode()


def test_wrong_missing_and_revoked_keys_get_langfuses_401(gateway: GatewayEnv):
    document = batch(trace_event("k1", "t-k1"))
    missing = gateway.post_json("/api/public/ingestion", document, auth=False)
    wrong = gateway.post_json(
        "/api/public/ingestion", document, headers={"Authorization": basic(gateway.public_key, "x")}
    )
    assert (missing.status, missing.json()["message"]) == (
        401,
        "No authorization header. Confirm that you've configured the correct host.",
    )
    assert (wrong.status, wrong.json()["error"]) == (401, "UnauthorizedError")
    pipeline = gateway.pipeline
    pipeline.cli(
        "keys", "create", "--project", "other", "--public-key", "pk-lf-revoke-me", "--secret-key", "sk-lf-revoke-me"
    )
    mine = {"Authorization": basic("pk-lf-revoke-me", "sk-lf-revoke-me")}
    assert _eventually(lambda: gateway.request("GET", "/api/public/projects", headers=mine).status == 200)
    assert gateway.request("GET", "/api/public/projects", headers=mine).json()["data"][0]["id"] == "other"
    pipeline.cli("keys", "revoke", "pk-lf-revoke-me")
    assert _eventually(lambda: gateway.request("GET", "/api/public/projects", headers=mine).status == 401)  # no restart


def _eventually(check: Any, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_public_key_alone_may_send_scores_only(gateway: GatewayEnv):
    bearer = {"Authorization": f"Bearer {gateway.public_key}"}
    score = {"id": "b2", "timestamp": WHEN, "type": "score-create", "body": {"name": "s", "value": 1, "traceId": "t-b"}}
    answer = gateway.post_json("/api/public/ingestion", batch(trace_event("b1", "t-b"), score), headers=bearer)
    assert answer.status == 207 and answer.json()["successes"] == [{"id": "b2", "status": 201}]
    assert answer.json()["errors"][0]["error"] == "Access Scope Denied"
    assert gateway.request("GET", "/api/public/projects", headers=bearer).status == 403
    assert gateway.post_json("/api/public/otel/v1/traces", {"resourceSpans": []}, headers=bearer).status == 403


def test_accepted_events_reach_kafka_keyed_partitioned_and_attributed(gateway: GatewayEnv):
    run = uuid.uuid4().hex[:8]
    hyphens = {"x-langfuse-sdk-name": "js", "x-langfuse-sdk-version": "5.1.0"}
    underscores = {"x_langfuse_sdk_name": "python", "x_langfuse_sdk_version": "2.51.3"}
    for index, headers in enumerate((hyphens, underscores)):
        answer = gateway.post_json(
            "/api/public/ingestion", batch(trace_event(f"{run}-{index}", f"t-{run}-{index}")), headers=headers
        )
        assert answer.json() == {"successes": [{"id": f"{run}-{index}", "status": 201}], "errors": []}
    messages = [
        m for m in gateway.pipeline.read_topic("ingestion") if m.key.decode().startswith(f"http-project:trace:t-{run}")
    ]
    assert len(messages) == 2
    partitions = load_topic_specs()["ingestion"].partitions
    for message in messages:
        assert message.partition == (murmur2(message.key) & 0x7FFFFFFF) % partitions  # Kafka's default partitioner
        assert orjson.loads(message.value)["project_id"] == "http-project"
    sdks = sorted(dict(m.headers)["x-langfuse-sdk-name"] for m in messages)
    assert sdks == [b"js", b"python"] and all(
        dict(m.headers)["x-langfuse-public-key"] == gateway.public_key.encode() for m in messages
    )


def test_rejected_events_are_dead_letters_naming_the_sdk(gateway: GatewayEnv):
    run = uuid.uuid4().hex[:8]
    bad = {"id": f"bad-{run}", "timestamp": "yesterday", "type": "trace-create", "body": {"id": "t"}}
    answer = gateway.post_json(
        "/api/public/ingestion",
        batch(bad),
        headers={"x_langfuse_sdk_name": "python", "x_langfuse_sdk_version": "2.60.10"},
    )
    assert answer.json()["errors"][0]["status"] == 400 and answer.json()["successes"] == []
    letters = [m for m in gateway.pipeline.read_topic("ingestion-deadletter") if f"bad-{run}".encode() in m.value]
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["lfpipe.reason-kind"] == b"invalid_envelope" and headers["lfpipe.topic"] == b"gateway"
    assert (headers["x-langfuse-sdk-name"], headers["x-langfuse-sdk-version"]) == (b"python", b"2.60.10")
    assert headers["x-langfuse-public-key"] == gateway.public_key.encode()


def test_bodies_that_are_not_batches_or_too_large_are_refused_whole(gateway: GatewayEnv):
    malformed = gateway.request("POST", "/api/public/ingestion", b'{"batch": [')
    assert malformed.status == 400 and malformed.json()["message"] == "Invalid request data"
    assert gateway.post_json("/api/public/ingestion", {"events": []}).status == 400
    assert gateway.post_json("/api/public/ingestion", batch()).json() == {"successes": [], "errors": []}
    huge = batch(trace_event("h1", "t-h", input="x" * 5_000_000))
    assert gateway.post_json("/api/public/ingestion", huge).status == 413
    bomb = gzip.compress(orjson.dumps({"resourceSpans": [], "padding": "x" * (OTEL_LIMIT + 1)}))
    assert len(bomb) < 100_000
    answer = gateway.request("POST", "/api/public/otel/v1/traces", bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status == 413
    assert gateway.request("DELETE", "/api/public/ingestion").status == 405


def test_otlp_replies_in_the_requests_encoding(gateway: GatewayEnv):
    proto = gateway.request(
        "POST",
        "/api/public/otel/v1/traces",
        ExportTraceServiceRequest().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert proto.status == 200 and proto.headers["Content-Type"].startswith("application/x-protobuf")
    ExportTraceServiceResponse.FromString(proto.body)  # what Dify's OTLP client parses
    assert gateway.post_json("/api/public/otel/v1/traces", {"resourceSpans": []}).json() == {}
    wrong = gateway.request("POST", "/api/public/otel/v1/traces", b"{}", headers={"Content-Type": "text/plain"})
    assert (wrong.status, wrong.json()) == (400, {"error": "Invalid content type"})
    garbage = gateway.request(
        "POST", "/api/public/otel/v1/traces", b"\xff\x00", headers={"Content-Type": "application/x-protobuf"}
    )
    assert garbage.status == 400
    version = gateway.post_json(
        "/api/public/otel/v1/traces", {"resourceSpans": []}, headers={"x-langfuse-ingestion-version": "9"}
    )
    assert version.status == 400


def test_scores_endpoint_in_both_forms(gateway: GatewayEnv):
    good = {"name": "s", "value": 1, "traceId": "t-s", "dataType": "NUMERIC"}
    assert gateway.post_json("/api/public/scores", [good, {**good, "id": "s2"}]).json() == {"message": "Accepted"}
    mixed = gateway.post_json("/api/public/scores", [good, {"name": "s", "value": 1}])  # the second has no target
    assert mixed.status == 207 and (mixed.json()["accepted"], mixed.json()["rejected"]) == (1, 1)
    single = gateway.post_json("/api/public/scores", {**good, "id": "s3"})
    assert (single.status, single.json()) == (200, {"id": "s3"})
    assert gateway.post_json("/api/public/scores", {"name": "s"}).status == 400


def test_media_upload_urls_sign_the_announced_file(gateway: GatewayEnv):
    content = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 10
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    announced = {
        "traceId": "t-m",
        "field": "output",
        "contentType": "image/png",
        "contentLength": len(content),
        "sha256Hash": digest,
    }
    answer = gateway.post_json("/api/public/media", announced)
    assert answer.status == 201
    media_id, url = answer.json()["mediaId"], answer.json()["uploadUrl"]
    assert media_id == base64.urlsafe_b64encode(hashlib.sha256(content).digest()).decode()[:22]
    assert gateway.request("GET", f"/api/public/media/{media_id}").status == 404  # not uploaded yet
    put_headers = {"Content-Type": "image/png", "x-amz-checksum-sha256": digest}
    forged = content[:-1] + b"!"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(url, data=forged, method="PUT", headers=put_headers), timeout=30)
    with urllib.request.urlopen(
        urllib.request.Request(url, data=content, method="PUT", headers=put_headers), timeout=30
    ) as put:
        assert put.status == 200
    report = {"uploadedAt": WHEN, "uploadHttpStatus": 200, "uploadTimeMs": 12}
    assert gateway.request("PATCH", f"/api/public/media/{media_id}", orjson.dumps(report)).json() == {"message": "OK"}
    assert gateway.request("GET", f"/api/public/media/{media_id}").json()["contentLength"] == len(content)
    again = gateway.post_json("/api/public/media", {**announced, "traceId": "t-m2"})
    assert again.json() == {"uploadUrl": None, "mediaId": media_id}  # stored already: nothing to upload
    refused = gateway.post_json("/api/public/media", {**announced, "contentType": "image/x-nope"})
    assert refused.status == 400


def test_health_readiness_and_metrics(gateway: GatewayEnv):
    assert gateway.request("GET", "/api/public/health", auth=False).json()["status"] == "OK"
    assert gateway.request("GET", "/api/public/ready", auth=False).json() == {"status": "OK"}
    metrics = gateway.request("GET", "/metrics", auth=False).body.decode()
    assert 'lfpipe_gateway_requests_total{endpoint="ingestion",status="207"}' in metrics
    assert 'lfpipe_gateway_events_total{endpoint="ingestion",outcome="accepted"}' in metrics
    assert 'lfpipe_gateway_bad_requests_total{endpoint="ingestion",reason="too_large"}' in metrics


def test_several_processes_share_one_port_and_report_one_set_of_metrics(gateway: GatewayEnv):
    several = GatewayEnv(gateway.pipeline, gateway.project, gateway.public_key, gateway.secret_key)
    several.start(workers=2)
    try:
        for number in range(20):  # a connection per request: the kernel spreads them over the processes
            answer = several.post_json(
                "/api/public/ingestion", batch(trace_event(f"multi-{number}", f"multi-t-{number}"))
            )
            assert answer.status == 207, answer.body  # every listening process is ready to serve
            assert answer.json()["successes"] == [{"id": f"multi-{number}", "status": 201}]
        metrics = several.request("GET", "/metrics", auth=False).body.decode()
        accepted = [
            line
            for line in metrics.splitlines()
            if line.startswith('lfpipe_gateway_events_total{endpoint="ingestion",outcome="accepted"}')
        ]
        assert len(accepted) == 1 and float(accepted[0].split()[-1]) == 20, metrics
    finally:
        assert several.stop() == 0, several.logs()
