"""OTLP trace exports → Langfuse ingestion events (``pipeline/gateway/otel.py``).

Requests are built with the opentelemetry-proto message classes (protobuf) or as OTLP/JSON documents. Every event
produced by ``events_of`` is checked against the worker's validator, so each test also proves validity.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from pipeline.gateway.otel import OtlpError, decode_request, export_response, spans_to_events
from pipeline.transforms.validate import IngestionEvent, parse_event

PB = "application/x-protobuf"
JSON = "application/json"
TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT = "b7ad6b7169203331"
CHILD = "00f067aa0ba902b7"
GRANDCHILD = "53995c3f42cd8ad8"
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20.000Z
MS = 1_000_000
SDK_SCOPE = ("langfuse-sdk", "3.10.0")


def span(
    span_id: str,
    *,
    name: str = "work",
    parent: str = "",
    trace: str = TRACE,
    start: int = T0,
    end: int = T0 + 1000 * MS,
    attributes: dict[str, Any] | None = None,
    status: tuple[int, str] = (0, ""),
) -> dict[str, Any]:
    """A span spec that both request builders understand."""
    return {
        "id": span_id,
        "name": name,
        "parent": parent,
        "trace": trace,
        "start": start,
        "end": end,
        "attributes": attributes or {},
        "status": status,
    }


def _pb_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_pb_value(item) for item in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=_pb_attributes(value)))
    return AnyValue(string_value=value)


def _pb_attributes(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_pb_value(value)) for key, value in attributes.items()]


def pb_export(*spans: dict, resource: dict | None = None, scope: tuple[str, str] = SDK_SCOPE) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_pb_attributes(resource or {}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = scope
    if scope[0].startswith("langfuse-sdk"):
        scope_spans.scope.attributes.extend(_pb_attributes({"public_key": "pk-lf-1"}))
    for spec in spans:
        message = scope_spans.spans.add(
            trace_id=bytes.fromhex(spec["trace"]),
            span_id=bytes.fromhex(spec["id"]),
            parent_span_id=bytes.fromhex(spec["parent"]),
            name=spec["name"],
            start_time_unix_nano=spec["start"],
            end_time_unix_nano=spec["end"],
        )
        message.attributes.extend(_pb_attributes(spec["attributes"]))
        message.status.code, message.status.message = spec["status"]
    return request.SerializeToString()


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP/JSON writes int64 as a string
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_json_value(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _json_attributes(value)}}
    return {"stringValue": value}


def _json_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _json_value(value)} for key, value in attributes.items()]


def json_document(*spans: dict, resource: dict | None = None, scope: tuple[str, str] = SDK_SCOPE) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _json_attributes(resource or {})},
                "scopeSpans": [
                    {
                        "scope": {"name": scope[0], "version": scope[1]},
                        "spans": [
                            {
                                "traceId": spec["trace"],
                                "spanId": spec["id"],
                                "parentSpanId": spec["parent"],
                                "name": spec["name"],
                                "startTimeUnixNano": str(spec["start"]),
                                "endTimeUnixNano": str(spec["end"]),
                                "attributes": _json_attributes(spec["attributes"]),
                                "status": {"code": spec["status"][0], "message": spec["status"][1]},
                            }
                            for spec in spans
                        ],
                    }
                ],
            }
        ]
    }


def json_export(*spans: dict, **options: Any) -> bytes:
    return orjson.dumps(json_document(*spans, **options))


def events_of(body: bytes, content_type: str = PB, project: str = "p1") -> list[dict]:
    """The events for a request, each one checked by the worker's validator."""
    events = spans_to_events(decode_request(body, content_type), project)
    for event in events:
        assert isinstance(parse_event(orjson.dumps(event), 5_000_000), IngestionEvent), event
    return events


def only(events: list[dict], event_type: str, body_id: str) -> dict:
    """The envelope of the one event of ``event_type`` for ``body_id``."""
    found = [event for event in events if event["type"] == event_type and event["body"]["id"] == body_id]
    assert len(found) == 1, found
    return found[0]


def trace_events(events: list[dict], trace_id: str = TRACE) -> list[dict]:
    return [event for event in events if event["type"] == "trace-create" and event["body"]["id"] == trace_id]


# --- requests and responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "Application/X-Protobuf; charset=binary"])
def test_protobuf_content_types_are_matched_by_containment(content_type: str) -> None:
    spans = decode_request(pb_export(span(ROOT)), content_type)
    assert spans[0]["scopeSpans"][0]["spans"][0]["spanId"] == ROOT


@pytest.mark.parametrize("content_type", ["application/json", "APPLICATION/JSON; charset=utf-8"])
def test_json_content_types_are_matched_by_containment(content_type: str) -> None:
    spans = decode_request(json_export(span(ROOT)), content_type)
    assert spans[0]["scopeSpans"][0]["spans"][0]["traceId"] == TRACE


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{}", "text/plain", "Invalid content type"),
        (b"{}", "", "Invalid content type"),
        (b"\xff\xff\xff\xff", PB, "Failed to parse OTel Protobuf Trace"),
        (b'{"resourceSpans": [', JSON, "Failed to parse OTel JSON Trace"),
        (b"NaN", JSON, "Failed to parse OTel JSON Trace"),
    ],
)
def test_refusals_carry_langfuse_messages(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(OtlpError) as refused:
        decode_request(body, content_type)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"", PB), (b"{}", JSON), (b'{"resourceSpans": []}', JSON), (b'{"resourceSpans": null}', JSON), (b"[]", JSON)],
)
def test_missing_or_empty_resource_spans_decode_to_nothing(body: bytes, content_type: str) -> None:
    assert decode_request(body, content_type) == []
    assert spans_to_events([], "p1") == []


def test_export_response_matches_the_request_encoding() -> None:
    body, content_type = export_response("application/x-protobuf")
    assert (body, content_type) == (b"", "application/x-protobuf")
    assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
    assert export_response("application/json; charset=utf-8") == (b"{}", "application/json")
    with pytest.raises(OtlpError, match="Invalid content type"):
        export_response("text/html")


def test_both_encodings_give_the_same_normal_form() -> None:
    attributes = {"s": "x", "b": True, "i": 42, "d": 1.5, "a": ["x", 7], "kv": {"k": "v"}, "raw": b"\x00\x01"}
    spec = span(CHILD, name="step", parent=ROOT, attributes=attributes, status=(2, "boom"))
    expected = [
        {
            "resource": {"service.name": "svc"},
            "scopeSpans": [
                {
                    "scope": {"name": "my-lib", "version": "1.0", "attributes": {}},
                    "spans": [
                        {
                            "traceId": TRACE,
                            "spanId": CHILD,
                            "parentSpanId": ROOT,
                            "name": "step",
                            "startTimeUnixNano": T0,
                            "endTimeUnixNano": T0 + 1000 * MS,
                            "attributes": {**attributes, "raw": "AAE="},  # bytes as base64 text
                            "status": {"code": 2, "message": "boom"},
                            "events": [],
                        }
                    ],
                }
            ],
        }
    ]
    options = {"resource": {"service.name": "svc"}, "scope": ("my-lib", "1.0")}
    assert decode_request(pb_export(spec, **options), PB) == expected
    assert decode_request(json_export(spec, **options), JSON) == expected


def test_json_specifics_enum_names_upper_case_ids_wide_ints_and_events() -> None:
    document = json_document(span(ROOT.upper(), trace=TRACE.upper(), attributes={"huge": 1}))
    raw_span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    raw_span["attributes"][0]["value"] = {"intValue": "99999999999999999999"}
    raw_span["status"] = {"code": "STATUS_CODE_ERROR"}
    raw_span["parentSpanId"] = "0000000000000000"
    raw_span["events"] = [{"name": "exception", "timeUnixNano": str(T0), "attributes": _json_attributes({"n": 3})}]
    decoded = decode_request(orjson.dumps(document), JSON)[0]["scopeSpans"][0]["spans"][0]
    assert (decoded["traceId"], decoded["spanId"], decoded["parentSpanId"]) == (TRACE, ROOT, "")
    assert decoded["attributes"] == {"huge": "99999999999999999999"}  # past int64: kept as text
    assert decoded["status"] == {"code": 2, "message": ""}
    assert decoded["events"] == [{"name": "exception", "timeUnixNano": T0, "attributes": {"n": 3}}]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("traceId", "abc", "has no valid traceId"),
        ("traceId", "0" * 32, "has no valid traceId"),
        ("traceId", "z" * 32, "has no valid traceId"),
        ("traceId", None, "has no valid traceId"),
        ("spanId", "0123456789abcde", "has no valid spanId"),
        ("spanId", None, "has no valid spanId"),
        ("spans", {}, "resourceSpans[0].scopeSpans[0].spans is not an array"),
        ("attributes", {"k": "v"}, "resourceSpans[0].scopeSpans[0].spans[1].attributes is not an array"),
    ],
)
def test_one_bad_span_rejects_the_whole_export(field: str, value: Any, problem: str) -> None:
    document = json_document(span(ROOT), span(CHILD, parent=ROOT))
    scope_spans = document["resourceSpans"][0]["scopeSpans"][0]
    target = scope_spans if field == "spans" else scope_spans["spans"][1]
    target[field] = value
    with pytest.raises(OtlpError) as refused:
        decode_request(orjson.dumps(document), JSON)
    assert str(refused.value).startswith("Invalid OTLP trace export:")
    assert problem in str(refused.value)


def test_protobuf_ids_of_the_wrong_length_reject_the_export() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 8, span_id=b"\x02" * 8)
    with pytest.raises(OtlpError, match=r"^Invalid OTLP trace export: .*spans\[0\] has no valid traceId"):
        decode_request(request.SerializeToString(), PB)


# --- the Langfuse SDK v3/v4 attribute set --------------------------------------------------------------------

SDK_RESOURCE = {"service.name": "chatbot", "service.version": "9.9"}
SDK_ROOT = {
    "langfuse.trace.name": "support-chat",
    "user.id": "user-7",
    "session.id": "sess-3",
    "langfuse.trace.tags": ["vip", "beta"],
    "langfuse.trace.public": True,
    "langfuse.trace.metadata.tenant": "acme",
    "langfuse.trace.metadata.limits": '{"rpm": 60}',
    "langfuse.trace.input": '{"question": "hi"}',
    "langfuse.trace.output": '"hello"',
    "langfuse.environment": "production",
    "langfuse.release": "v1.4.0",
    "langfuse.version": "2",
}
SDK_GENERATION = {
    "langfuse.observation.type": "generation",
    "langfuse.observation.model.name": "gpt-4o",
    "langfuse.observation.model.parameters": '{"temperature": 0.7, "max_tokens": 256, "stop": ["END"]}',
    "langfuse.observation.usage_details": '{"input": 12, "output": 7, "total": 19}',
    "langfuse.observation.cost_details": '{"input": 0.001, "output": 0.002}',
    "langfuse.observation.completion_start_time": '"2023-11-14T22:13:20.250999+00:00"',
    "langfuse.observation.prompt.name": "greeting",
    "langfuse.observation.prompt.version": 4,
    "langfuse.observation.input": '[{"role": "user", "content": "hi"}]',
    "langfuse.observation.output": '{"role": "assistant", "content": "hello"}',
    "langfuse.observation.metadata.request_id": "r-1",
    "langfuse.observation.metadata.retries": 2,
    "langfuse.environment": "production",
    "langfuse.release": "v1.4.0",
    "langfuse.version": "2",
}
SDK_SCOPE_METADATA = {"name": "langfuse-sdk", "version": "3.10.0", "attributes": {"public_key": "pk-lf-1"}}


def sdk_export() -> bytes:
    return pb_export(
        span(ROOT, name="handle-request", end=T0 + 2000 * MS, attributes=SDK_ROOT),
        span(CHILD, name="llm-call", parent=ROOT, start=T0 + 100 * MS, attributes=SDK_GENERATION),
        resource=SDK_RESOURCE,
    )


def test_sdk_root_span_makes_the_full_trace() -> None:
    events = events_of(sdk_export())
    [trace] = trace_events(events)  # no shallow one next to the full one
    assert trace["timestamp"] == "2023-11-14T22:13:20.000Z"  # dated by the root's start
    assert trace["body"] == {
        "id": TRACE,
        "timestamp": "2023-11-14T22:13:20.000Z",
        "environment": "production",
        "name": "support-chat",
        "userId": "user-7",
        "sessionId": "sess-3",
        "tags": ["vip", "beta"],
        "public": True,
        "release": "v1.4.0",
        "version": "2",
        "input": {"question": "hi"},
        "output": "hello",
        "metadata": {
            "tenant": "acme",
            "limits": {"rpm": 60},
            "resourceAttributes": SDK_RESOURCE,
            "scope": SDK_SCOPE_METADATA,
        },
    }


def test_sdk_root_span_is_a_span_observation() -> None:
    root = only(events_of(sdk_export()), "span-create", ROOT)
    assert root["timestamp"] == "2023-11-14T22:13:22.000Z"  # observation events are dated by their end
    assert root["body"] == {
        "id": ROOT,
        "traceId": TRACE,
        "name": "handle-request",
        "startTime": "2023-11-14T22:13:20.000Z",
        "endTime": "2023-11-14T22:13:22.000Z",
        "environment": "production",
        "level": "DEFAULT",
        "version": "2",
        "metadata": {"resourceAttributes": SDK_RESOURCE, "scope": SDK_SCOPE_METADATA},
    }


def test_sdk_generation_carries_model_usage_cost_and_prompt() -> None:
    generation = only(events_of(sdk_export()), "generation-create", CHILD)
    assert generation["body"] == {
        "id": CHILD,
        "traceId": TRACE,
        "parentObservationId": ROOT,
        "name": "llm-call",
        "startTime": "2023-11-14T22:13:20.100Z",
        "endTime": "2023-11-14T22:13:21.000Z",
        "environment": "production",
        "completionStartTime": "2023-11-14T22:13:20.250Z",
        "metadata": {
            "request_id": "r-1",
            "retries": 2,
            "resourceAttributes": SDK_RESOURCE,
            "scope": SDK_SCOPE_METADATA,
        },
        "level": "DEFAULT",
        "version": "2",
        "input": [{"role": "user", "content": "hi"}],
        "output": {"role": "assistant", "content": "hello"},
        "model": "gpt-4o",
        "modelParameters": {"temperature": 0.7, "max_tokens": 256, "stop": '["END"]'},
        "usageDetails": {"input": 12, "output": 7, "total": 19},
        "costDetails": {"input": 0.001, "output": 0.002},
        "promptName": "greeting",
        "promptVersion": 4,
    }


@pytest.mark.parametrize(
    ("attributes", "status", "level", "message"),
    [
        ({}, (2, "boom"), "ERROR", "boom"),
        ({}, (1, ""), "DEFAULT", None),
        (
            {"langfuse.observation.level": "WARNING", "langfuse.observation.status_message": "slow"},
            (2, "x"),
            "WARNING",
            "slow",
        ),
        ({"langfuse.observation.level": "LOUD"}, (0, ""), "DEFAULT", None),
    ],
)
def test_level_and_status_message(
    attributes: dict[str, Any], status: tuple[int, str], level: str, message: str
) -> None:
    body = only(events_of(pb_export(span(ROOT, attributes=attributes, status=status))), "span-create", ROOT)["body"]
    assert body["level"] == level
    assert body.get("statusMessage") == message


@pytest.mark.parametrize(("declared", "event_type"), [("span", "span-create"), ("event", "event-create")])
def test_span_and_event_observations_keep_no_model_fields(declared: str, event_type: str) -> None:
    attributes = {
        key: value for key, value in SDK_GENERATION.items() if not key.startswith("langfuse.observation.type")
    }
    attributes["langfuse.observation.type"] = declared
    body = only(events_of(pb_export(span(ROOT, attributes=attributes))), event_type, ROOT)["body"]
    assert body["input"] == [{"role": "user", "content": "hi"}]
    assert not {"model", "modelParameters", "usageDetails", "costDetails", "promptName", "promptVersion"} & set(body)


@pytest.mark.parametrize(("version", "event_type"), [("3.3.0", "generation-create"), ("3.4.1", "span-create")])
def test_old_python_sdk_spans_with_generation_attributes_are_generations(version: str, event_type: str) -> None:
    attributes = {"langfuse.observation.type": "span", "langfuse.observation.model.name": "gpt-4o"}
    events = events_of(pb_export(span(ROOT, attributes=attributes), scope=("langfuse-sdk", version)))
    assert [event["type"] for event in events if event["body"]["id"] == ROOT] == [event_type]


def test_values_the_validator_would_refuse_are_dropped_or_converted() -> None:
    attributes = {
        "langfuse.trace.name": "n" * 1500,
        "user.id": 42,
        "langfuse.observation.type": "generation",
        "langfuse.observation.prompt.name": "greeting",
        "langfuse.observation.prompt.version": 70000,
        "langfuse.observation.completion_start_time": '"not a date"',
        "langfuse.observation.model.parameters": '{"response_format": {"type": "json"}, "seed": null}',
    }
    events = events_of(pb_export(span(ROOT, attributes=attributes)))
    trace = only(events, "trace-create", TRACE)["body"]
    assert (len(trace["name"]), trace["userId"]) == (1000, "42")
    generation = only(events, "generation-create", ROOT)["body"]
    assert not {"promptName", "promptVersion", "completionStartTime"} & set(generation)
    assert generation["modelParameters"] == {"response_format": '{"type":"json"}', "seed": "null"}


def test_environment_comes_from_the_span_then_the_resource() -> None:
    resource = {"deployment.environment.name": "staging"}
    events = events_of(
        pb_export(span(ROOT), span(CHILD, parent=ROOT, attributes={"langfuse.environment": "prod"}), resource=resource)
    )
    assert only(events, "span-create", ROOT)["body"]["environment"] == "staging"
    assert only(events, "span-create", CHILD)["body"]["environment"] == "prod"
    legacy = events_of(pb_export(span(ROOT), resource={"deployment.environment": "qa"}))
    assert only(legacy, "trace-create", TRACE)["body"]["environment"] == "qa"


def test_metadata_of_other_instrumentations() -> None:
    attributes = {
        "langfuse.observation.metadata": '{"a": 1, "__proto__": {"polluted": true}}',
        "langfuse.observation.metadata.b": '{"c": [1, 2]}',
        "langfuse.metadata.d": "plain",
        "custom.flag": True,
        "custom.count": 3,
        "input.value": "question",
    }
    events = events_of(
        pb_export(span(ROOT, attributes=attributes), resource={"service.name": "svc"}, scope=("my-lib", "1.0"))
    )
    body = only(events, "span-create", ROOT)["body"]
    assert body["input"] == "question"
    assert body["metadata"] == {
        "a": 1,
        "b": {"c": [1, 2]},
        "d": "plain",
        "attributes": {  # every other attribute, as text; the input attribute left
            "langfuse.observation.metadata": '{"a": 1, "__proto__": {"polluted": true}}',
            "langfuse.observation.metadata.b": '{"c": [1, 2]}',
            "langfuse.metadata.d": "plain",
            "custom.flag": "true",
            "custom.count": "3",
        },
        "resourceAttributes": {"service.name": "svc"},
        "scope": {"name": "my-lib", "version": "1.0", "attributes": {}},
    }


# Every attribute key the conversion reads, to try each with values of every shape.
READ_KEYS = [
    *SDK_ROOT,
    *SDK_GENERATION,
    "langfuse.observation.level",
    "langfuse.observation.status_message",
    "langfuse.observation.metadata",
    "langfuse.trace.metadata",
    "langfuse.internal.as_root",
    "langfuse.user.id",
    "langfuse.session.id",
    "langfuse.tags",
    "langfuse.public",
    "langfuse.prompt.name",
    "langfuse.prompt.version",
    "deployment.environment.name",
    "gen_ai.operation.name",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cost",
    "gen_ai.prompt",
    "gen_ai.prompt.0.content",
    "gen_ai.input.messages",
    "openinference.span.kind",
    "llm.model_name",
    "llm.invocation_parameters",
    "llm.token_count.prompt",
    "llm.input_messages.0.message.content",
    "input.value",
    "ai.operationId",
    "ai.model.id",
    "ai.prompt.messages",
    "ai.response.text",
    "ai.response.msToFirstChunk",
    "ai.usage.cachedInputTokens",
    "ai.settings.temperature",
    "ai.telemetry.functionId",
    "ai.telemetry.metadata.tags",
    "ai.telemetry.metadata.langfusePrompt",
    "tag.tags",
]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x",
        "null",
        '{"name": "p", "version": 1}',
        "[1, 2]",
        '"2023-11-14T22:13:20Z"',
        "1e400",
        "-5",
        0,
        -(2**63),
        2**63 - 1,
        1e300,
        float("nan"),
        float("inf"),
        True,
        ["a", 1, None],
        {"k": {"deep": [1]}},
        b"\x00\xff",
    ],
    ids=repr,
)
@pytest.mark.parametrize("scope", [SDK_SCOPE, ("ai", "")])
def test_any_value_under_any_read_key_gives_valid_events(value: Any, scope: tuple[str, str]) -> None:
    attributes = dict.fromkeys(READ_KEYS, value)
    export = pb_export(span(ROOT, attributes=attributes), span(CHILD, parent=ROOT, attributes=attributes), scope=scope)
    events = events_of(export)  # validity is checked in events_of
    assert {event["body"]["id"] for event in events} == {TRACE, ROOT, CHILD}


# --- other instrumentations ----------------------------------------------------------------------------------

OPENAI_SCOPE = ("opentelemetry.instrumentation.openai", "0.40.0")


def test_gen_ai_semconv_generation_subtracts_cache_tokens_from_input() -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read_input_tokens": 30,
        "gen_ai.usage.cache_creation_input_tokens": 10,
        "gen_ai.usage.cost": 0.5,
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]',
        "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]',
    }
    events = events_of(pb_export(span(ROOT, name="chat gpt-4o", attributes=attributes), scope=OPENAI_SCOPE))
    body = only(events, "generation-create", ROOT)["body"]
    assert body["model"] == "gpt-4o-2024-08-06"
    assert body["usageDetails"] == {"input": 60, "output": 20, "input_cached_tokens": 30, "input_cache_creation": 10}
    assert body["costDetails"] == {"total": 0.5}
    assert body["modelParameters"] == {"temperature": 0.2, "max_tokens": 100}
    assert body["input"] == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert body["output"] == [{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]
    assert body["metadata"]["attributes"]["gen_ai.usage.input_tokens"] == "100"
    assert "gen_ai.input.messages" not in body["metadata"]["attributes"]
    assert only(events, "trace-create", TRACE)["body"]["name"] == "chat gpt-4o"


def test_gen_ai_prompt_and_completion_attributes_are_rebuilt_into_arrays() -> None:
    attributes = {
        "gen_ai.request.model": "gpt-4o",
        "llm.request.type": "chat",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "be brief",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "hi",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "hello",
    }
    body = only(events_of(pb_export(span(ROOT, attributes=attributes), scope=OPENAI_SCOPE)), "generation-create", ROOT)[
        "body"
    ]
    assert body["input"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert body["output"] == [{"role": "assistant", "content": "hello"}]
    assert body["metadata"]["attributes"] == {"gen_ai.request.model": "gpt-4o", "llm.request.type": "chat"}


@pytest.mark.parametrize(
    ("operation", "event_type"),
    [
        ("embeddings", "embedding-create"),
        ("invoke_agent", "agent-create"),
        ("create_agent", "agent-create"),
        ("execute_tool", "tool-create"),
        ("generate_content", "generation-create"),
        ("text_completion", "generation-create"),
        ("something_else", "span-create"),
    ],
)
def test_gen_ai_operation_name_decides_the_type(operation: str, event_type: str) -> None:
    events = events_of(pb_export(span(ROOT, attributes={"gen_ai.operation.name": operation}), scope=OPENAI_SCOPE))
    assert only(events, event_type, ROOT)["body"]["name"] == "work"


def test_gen_ai_tool_span() -> None:
    attributes = {
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.call.arguments": '{"city": "Paris"}',
        "gen_ai.tool.call.result": '{"temp": 21}',
    }
    events = events_of(pb_export(span(CHILD, name="tool", parent=ROOT, attributes=attributes), scope=OPENAI_SCOPE))
    body = only(events, "tool-create", CHILD)["body"]
    assert (body["name"], body["input"], body["output"]) == ("get_weather", {"city": "Paris"}, {"temp": 21})


def test_openinference_llm_span_keeps_messages_nested() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": 10,
        "llm.token_count.completion": 5,
        "llm.token_count.total": 15,
        "llm.invocation_parameters": '{"temperature": 0}',
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "hi",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "hello",
    }
    events = events_of(
        pb_export(
            span(ROOT, name="ChatCompletion", attributes=attributes),
            scope=("openinference.instrumentation.openai", "0.1"),
        )
    )
    body = only(events, "generation-create", ROOT)["body"]
    assert body["input"] == [{"message": {"role": "user", "content": "hi"}}]
    assert body["output"] == [{"message": {"role": "assistant", "content": "hello"}}]
    assert (body["model"], body["modelParameters"]) == ("gpt-4o-mini", {"temperature": 0})
    assert body["usageDetails"] == {"input": 10, "output": 5, "total": 15}
    assert not any(key.startswith("llm.input_messages") for key in body["metadata"]["attributes"])
    assert body["metadata"]["attributes"]["openinference.span.kind"] == "LLM"


def test_openinference_chain_span_reads_input_and_output_values() -> None:
    attributes = {"openinference.span.kind": "CHAIN", "input.value": '{"query": "q"}', "output.value": "plain answer"}
    events = events_of(
        pb_export(span(ROOT, attributes=attributes), scope=("openinference.instrumentation.langchain", "0.1"))
    )
    body = only(events, "chain-create", ROOT)["body"]
    assert (body["input"], body["output"]) == ({"query": "q"}, "plain answer")


def ai_sdk_export() -> bytes:
    telemetry = {
        "ai.telemetry.functionId": "fn",
        "ai.telemetry.metadata.userId": "u-9",
        "ai.telemetry.metadata.sessionId": "s-9",
        "ai.telemetry.metadata.feature": "chat",
    }
    root = {
        **telemetry,
        "ai.operationId": "ai.generateText",
        "ai.prompt": '{"prompt": "hi"}',
        "ai.response.text": "hello",
    }
    generate = {
        **telemetry,
        "ai.operationId": "ai.generateText.doGenerate",
        "ai.model.id": "gpt-4o",
        "ai.model.provider": "openai.chat",
        "ai.prompt.messages": '[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]',
        "ai.response.text": "42",
        "ai.settings.temperature": 0.3,
        "ai.settings.maxRetries": 2,
        "gen_ai.system": "openai.chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 10,
        "ai.usage.totalTokens": 60,
        "ai.usage.cachedInputTokens": 20,
        "ai.usage.reasoningTokens": 4,
    }
    return pb_export(
        span(ROOT, name="ai.generateText", end=T0 + 3000 * MS, attributes=root),
        span(CHILD, name="ai.generateText.doGenerate", parent=ROOT, start=T0 + 10 * MS, attributes=generate),
        scope=("ai", ""),
    )


def test_ai_sdk_do_generate_span() -> None:
    body = only(events_of(ai_sdk_export()), "generation-create", CHILD)["body"]
    assert body["name"] == "fn:ai.generateText.doGenerate"
    assert body["model"] == "gpt-4o"
    assert body["usageDetails"] == {
        "input": 30,
        "output": 6,
        "total": 60,
        "input_cached_tokens": 20,
        "output_reasoning_tokens": 4,
    }
    assert body["modelParameters"] == {"temperature": 0.3, "maxRetries": 2, "system": "openai.chat"}
    assert body["input"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["output"] == "42"  # the response text stays text
    assert {key: body["metadata"][key] for key in ("userId", "sessionId", "feature")} == {
        "userId": "u-9",
        "sessionId": "s-9",
        "feature": "chat",
    }


def test_ai_sdk_trace_events() -> None:
    full, update = trace_events(events_of(ai_sdk_export()))  # the root's full one, the child's trace update
    assert full["body"] == {
        "id": TRACE,
        "timestamp": "2023-11-14T22:13:20.000Z",
        "environment": "default",
        "name": "fn:ai.generateText",
        "userId": "u-9",
        "sessionId": "s-9",
        "input": {"prompt": "hi"},
        "output": "hello",
        "metadata": {
            "userId": "u-9",
            "sessionId": "s-9",
            "feature": "chat",
            "attributes": {
                "ai.telemetry.functionId": "fn",
                "ai.telemetry.metadata.userId": "u-9",
                "ai.telemetry.metadata.sessionId": "s-9",
                "ai.telemetry.metadata.feature": "chat",
                "ai.operationId": "ai.generateText",
            },
            "resourceAttributes": {},
            "scope": {"name": "ai", "version": "", "attributes": {}},
        },
    }
    assert update["body"] == {
        "id": TRACE,
        "timestamp": "2023-11-14T22:13:20.010Z",
        "environment": "default",
        "userId": "u-9",
        "sessionId": "s-9",
    }
    assert update["id"] != full["id"]


def test_ai_sdk_stream_first_chunk_sets_completion_start() -> None:
    attributes = {
        "ai.operationId": "ai.streamText.doStream",
        "ai.model.id": "gpt-4o",
        "ai.response.msToFirstChunk": 250.7,
    }
    events = events_of(pb_export(span(ROOT, start=T0 + 5 * MS, attributes=attributes), scope=("ai", "")))
    assert only(events, "generation-create", ROOT)["body"]["completionStartTime"] == "2023-11-14T22:13:20.255Z"


# --- times, trace events, determinism ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "start_time", "end_time"),
    [
        (T0 + 123_999_999, T0 + 1_999_999_999, "2023-11-14T22:13:20.123Z", "2023-11-14T22:13:21.999Z"),
        (0, T0 + 5 * MS, "2023-11-14T22:13:20.005Z", "2023-11-14T22:13:20.005Z"),
        (T0 + 7 * MS, 0, "2023-11-14T22:13:20.007Z", "2023-11-14T22:13:20.007Z"),
        (T0, 2**64 - 1, "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:20.000Z"),  # year 2554: out of range
        (0, 0, "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.000Z"),
    ],
)
def test_times_are_truncated_to_ms_and_a_missing_edge_takes_the_other(
    start: int, end: int, start_time: str, end_time: str
) -> None:
    event = only(events_of(pb_export(span(ROOT, start=start, end=end))), "span-create", ROOT)
    assert (event["body"]["startTime"], event["body"]["endTime"], event["timestamp"]) == (
        start_time,
        end_time,
        end_time,
    )


def test_shallow_trace_only_for_traces_without_a_full_one() -> None:
    export = json_export(
        span(CHILD, parent=ROOT, trace=OTHER_TRACE, start=T0 + 5000 * MS, end=T0 + 6000 * MS),
        span(GRANDCHILD, parent=CHILD, trace=OTHER_TRACE, start=T0 + 2000 * MS, end=T0 + 9000 * MS),
        span(ROOT, end=T0 + 4000 * MS),
        span(CHILD, parent=ROOT, start=T0 + 1000 * MS, attributes={"user.id": "u-1"}),
    )
    events = events_of(export, JSON)
    [shallow] = trace_events(events, OTHER_TRACE)
    assert shallow["body"] == {"id": OTHER_TRACE, "timestamp": "2023-11-14T22:13:22.000Z", "environment": "default"}
    assert shallow["timestamp"] == "2023-11-14T22:13:22.000Z"  # the trace's earliest span start
    full, update = trace_events(events)
    assert (full["body"]["name"], full["timestamp"]) == ("work", "2023-11-14T22:13:20.000Z")
    assert update["body"] == {
        "id": TRACE,
        "timestamp": "2023-11-14T22:13:21.000Z",
        "environment": "default",
        "userId": "u-1",
    }
    assert len(events) == 4 + 3


def test_as_root_span_makes_a_full_trace_despite_its_parent() -> None:
    attributes = {"langfuse.internal.as_root": True, "langfuse.trace.name": "remote"}
    events = events_of(pb_export(span(CHILD, parent=ROOT, attributes=attributes)))
    [trace] = trace_events(events)
    assert (trace["body"]["name"], "metadata" in trace["body"]) == ("remote", True)
    assert only(events, "span-create", CHILD)["body"]["parentObservationId"] == ROOT


def test_non_root_span_without_trace_attributes_makes_no_trace_event_of_its_own() -> None:
    events = events_of(pb_export(span(CHILD, parent=ROOT, start=T0 + 3 * MS)))
    assert [event["body"] for event in trace_events(events)] == [
        {"id": TRACE, "timestamp": "2023-11-14T22:13:20.003Z", "environment": "default"}
    ]


def test_conversion_is_deterministic() -> None:
    for export, content_type in (
        (sdk_export(), PB),
        (ai_sdk_export(), PB),
        (json_export(span(CHILD, parent=ROOT)), JSON),
    ):
        first = orjson.dumps(events_of(export, content_type))
        assert orjson.dumps(events_of(export, content_type)) == first
    events = events_of(sdk_export())
    ids = [event["id"] for event in events]
    assert len(set(ids)) == len(ids) == 3
    other_project = events_of(sdk_export(), project="p2")
    assert not set(ids) & {event["id"] for event in other_project}
    assert [event["project_id"] for event in other_project] == ["p2"] * 3
    # pinned, so that a per-process namespace or a changed recipe shows: re-sent exports must map to the same ids
    assert ids[0] == "b464e7c3-fb4b-504d-bf55-ce7f12688eb5"  # uuid5(namespace, "p1/<trace>/<root span>/trace")
    assert only(events, "generation-create", CHILD)["id"] == "f5ad60cb-8183-5ffb-a6f1-693f734c929b"
