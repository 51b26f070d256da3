"""Request bodies for ``lfpipe load gateway``: SDK-shaped batches from the generated stream, and OTLP exports."""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import orjson
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.recordfile import Record

BATCH_EVENTS = 15
SPANS_PER_EXPORT = 50


def batch_bodies(records: list[Record]) -> list[bytes]:
    """The stream's events as the v2 SDK posts them: no project (the key names it), 15 per request."""
    events = []
    for record in records:
        try:
            event = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            event.pop("project_id", None)
            events.append(event)
    metadata = {"batch_size": BATCH_EVENTS, "sdk_name": "python", "sdk_version": "2.60.10"}
    return [
        orjson.dumps({"batch": events[start : start + BATCH_EVENTS], "metadata": metadata})
        for start in range(0, len(events), BATCH_EVENTS)
    ]


def otlp_bodies(count: int, seed: int) -> list[bytes]:
    """OTLP exports of ``SPANS_PER_EXPORT`` spans: a root and chat generations with gen_ai attributes."""
    rng = random.Random(seed)
    now = time.time_ns()
    bodies = []
    for _ in range(count):
        trace_id = rng.randbytes(16).hex()
        root = rng.randbytes(8).hex()
        spans = [_span(trace_id, root, "", "agent run", now, {})]
        for index in range(SPANS_PER_EXPORT - 1):
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": rng.randint(100, 4000),
                "gen_ai.usage.output_tokens": rng.randint(10, 800),
                "gen_ai.prompt.0.content": " ".join(rng.choices(["why", "the", "order", "late", "is"], k=40)),
                "gen_ai.completion.0.content": "it shipped " * rng.randint(3, 30),
            }
            spans.append(_span(trace_id, rng.randbytes(8).hex(), root, f"chat {index}", now, attributes))
        request = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [_attribute("service.name", "load-app")]},
                    "scopeSpans": [{"scope": {"name": "openinference.instrumentation"}, "spans": spans}],
                }
            ]
        }
        bodies.append(_to_protobuf(request))
    return bodies


def _span(trace_id: str, span_id: str, parent: str, name: str, now: int, attributes: dict[str, Any]) -> dict:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(now - 2_000_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [_attribute(key, value) for key, value in attributes.items()],
    }


def _attribute(key: str, value: Any) -> dict:
    kind = "intValue" if isinstance(value, int) else "stringValue"
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def _to_protobuf(request: dict) -> bytes:
    # OTLP/JSON carries ids as hex; the protobuf message wants bytes.
    for resource in request["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    span[field] = _hex_to_b64(span[field])
    return ParseDict(request, ExportTraceServiceRequest()).SerializeToString()


def _hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()
