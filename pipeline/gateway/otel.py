"""OTLP/HTTP trace exports (``POST /api/public/otel/v1/traces``) → Langfuse ingestion events. Pure, no I/O.

``decode_request(body, content_type)`` (``body`` already decompressed)
    * Content type containing ``application/x-protobuf`` (case-insensitive): ``ExportTraceServiceRequest``; else
      containing ``application/json``: OTLP/JSON; else ``OtlpError("Invalid content type")``. Undecodable:
      ``"Failed to parse OTel Protobuf Trace"`` / ``"Failed to parse OTel JSON Trace"``.
    * Missing or empty ``resourceSpans``: ``[]`` (the endpoint answers 200 ``{}``).
    * As in Langfuse v4 the whole export is refused, ``OtlpError("Invalid OTLP trace export: …")``, when a span's
      traceId is not 32 hex digits (or is all zero) or its spanId is not 16 hex digits, or (JSON) ``scopeSpans``,
      ``spans``, ``attributes`` or ``events`` is present but not an array (usually an OTLP logs export).
    * Normal form, whatever the encoding: resource span ``{"resource": {attribute: value}, "scopeSpans": [...]}``
      (``resource`` holds the resource's attributes); scope span ``{"scope": {"name", "version", "attributes"},
      "spans": [...]}``; span ``{"traceId", "spanId", "parentSpanId", "name", "startTimeUnixNano",
      "endTimeUnixNano", "attributes", "status": {"code", "message"}, "events": [{"name", "timeUnixNano",
      "attributes"}]}``. Ids are lower-case hex, ``parentSpanId`` is "" unless it is 16 hex digits, not all zero.
      Times are ints, 0 when absent. Attribute values: str, bool, int (OTLP/JSON ``intValue`` strings parsed; past
      int64 they stay strings), float, list (``arrayValue``), dict (``kvlistValue``), bytes as standard base64 text
      (as OTLP/JSON carries them), None when empty or nested deeper than ``MAX_VALUE_DEPTH``.

``spans_to_events(resource_spans, project_id)``
    The events Langfuse's OTel processor makes (study §4.3; field sources in ``otel_attributes``) as dicts for
    ``orjson.dumps``, each valid for ``validate.parse_event``. Deterministic (no clock, no randomness, the same
    bytes for the same export), so an export re-sent after a 5xx changes nothing.
    * Envelope ids: uuid5 of (project, trace id, span id, event kind).
    * Times: nanoseconds truncated to milliseconds, ISO 8601 with ``Z``. A missing (0) or out-of-range (outside
      1900..2299) edge takes the other edge; with neither, the Unix epoch (what a 0 time says).
    * Per span one ``<type>-create`` (``span-create`` … ``guardrail-create``) dated by the span's end. Model,
      model parameters, usage and cost only on types other than SPAN and EVENT; prompt only on GENERATION, and
      only as a name with an int version in 0..65535 (else neither).
    * ``trace-create``: full for a root span (no parent, or ``langfuse.internal.as_root``); only the trace-level
      attributes for another span that has some; and per trace without a full one in the export a shallow
      ``{id, timestamp, environment}`` at the trace's earliest span start. Trace events are dated (envelope and
      body) by their span's *start*: the trace timestamp is immutable (the earliest event sets it), so the root's
      event must come first, and a child's explicit trace update, starting later, must win over the root's
      fallbacks (the span name as trace name). Trace names are cut to 1000 characters.
    * Metadata: the user metadata attributes, then ``attributes`` (the other span attributes as text, minus those
      that became input or output; not for scopes named ``langfuse-sdk…``), ``resourceAttributes`` and ``scope``.

``export_response(content_type)``: an empty ``ExportTraceServiceResponse`` for protobuf requests, ``{}`` for JSON.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.gateway import otel_attributes as fields
from pipeline.gateway.otel_attributes import SpanView, as_bool, iso_ms, parse_json
from pipeline.transforms.normalize import stringify

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_VALUE_DEPTH = 64
MAX_TRACE_NAME = 1000
TRACE_ID = re.compile(r"[0-9a-f]{32}")
SPAN_ID = re.compile(r"[0-9a-f]{16}")
STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
# A fixed namespace: envelope ids must be the same on every run, host and version.
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "lfpipe:gateway:otel")
IdReader = Callable[[Any], str]


class OtlpError(ValueError):
    """A refused export; the message is meant for the HTTP client (400 ``{"error": message}``)."""


def _encoding(content_type: str) -> str:
    lowered = content_type.lower()
    if PROTOBUF in lowered:
        return PROTOBUF
    if JSON in lowered:
        return JSON
    raise OtlpError("Invalid content type")


def decode_request(body: bytes, content_type: str) -> list[dict]:
    """The export's ``resourceSpans`` in the normal form of the module docstring."""
    resource_spans = _from_protobuf(body) if _encoding(content_type) == PROTOBUF else _from_json(body)
    _check_ids(resource_spans)
    return resource_spans


def export_response(content_type: str) -> tuple[bytes, str]:
    if _encoding(content_type) == PROTOBUF:
        return ExportTraceServiceResponse().SerializeToString(), PROTOBUF
    return b"{}", JSON


def _from_protobuf(body: bytes) -> list[dict]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise OtlpError("Failed to parse OTel Protobuf Trace") from exc
    # The protobuf JSON mapping is OTLP/JSON (int64 as strings, enums by name) but for ids: base64, not hex.
    document = MessageToDict(request)
    return _resource_spans(document.get("resourceSpans"), lambda value: base64.b64decode(_text(value)).hex())


def _from_json(body: bytes) -> list[dict]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpError("Failed to parse OTel JSON Trace") from exc
    if not isinstance(document, dict):
        return []
    return _resource_spans(document.get("resourceSpans"), lambda value: _text(value).lower())


def _resource_spans(items: Any, read_id: IdReader) -> list[dict]:
    normal: list[dict] = []
    for i, resource_spans in enumerate(_array(items, "resourceSpans")):
        where = f"resourceSpans[{i}]"
        resource_spans = _object(resource_spans, where)
        scope_spans = _array(resource_spans.get("scopeSpans"), f"{where}.scopeSpans")
        normal.append(
            {
                "resource": _attributes(resource_spans.get("resource"), f"{where}.resource"),
                "scopeSpans": [
                    _scope_spans(item, f"{where}.scopeSpans[{j}]", read_id) for j, item in enumerate(scope_spans)
                ],
            }
        )
    return normal


def _scope_spans(scope_spans: Any, where: str, read_id: IdReader) -> dict:
    scope = _object(_object(scope_spans, where).get("scope"), f"{where}.scope")
    spans = _array(scope_spans.get("spans"), f"{where}.spans")
    return {
        "scope": {
            "name": _text(scope.get("name")),
            "version": _text(scope.get("version")),
            "attributes": _attributes(scope, f"{where}.scope"),
        },
        "spans": [_span(span, f"{where}.spans[{k}]", read_id) for k, span in enumerate(spans)],
    }


def _span(span: Any, where: str, read_id: IdReader) -> dict:
    span = _object(span, where)
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    code = status.get("code")
    events = _array(span.get("events"), f"{where}.events")
    return {
        "traceId": read_id(span.get("traceId")),
        "spanId": read_id(span.get("spanId")),
        "parentSpanId": read_id(span.get("parentSpanId")),
        "name": _text(span.get("name")),
        "startTimeUnixNano": _uint(span.get("startTimeUnixNano")),
        "endTimeUnixNano": _uint(span.get("endTimeUnixNano")),
        "attributes": _attributes(span, where),
        # the JSON mapping may name the enum instead of numbering it
        "status": {
            "code": STATUS_CODES.get(code, 0) if isinstance(code, str) else _uint(code),
            "message": _text(status.get("message")),
        },
        "events": [_event(event, f"{where}.events[{n}]") for n, event in enumerate(events)],
    }


def _event(event: Any, where: str) -> dict:
    event = _object(event, where)
    return {
        "name": _text(event.get("name")),
        "timeUnixNano": _uint(event.get("timeUnixNano")),
        "attributes": _attributes(event, where),
    }


def _attributes(owner: Any, where: str, depth: int = 0) -> dict[str, Any]:
    """``owner["attributes"]``, a list of ``{key, value}``, as a dict; entries without a string key are skipped."""
    pairs = _array(owner.get("attributes"), f"{where}.attributes") if isinstance(owner, dict) else []
    return {
        pair["key"]: _value(pair.get("value"), depth + 1)
        for pair in pairs
        if isinstance(pair, dict) and isinstance(pair.get("key"), str)
    }


def _value(value: Any, depth: int) -> Any:
    """An OTLP/JSON ``AnyValue`` as plain data."""
    if not isinstance(value, dict) or depth > MAX_VALUE_DEPTH:
        return None
    if isinstance(value.get("stringValue"), str):
        return value["stringValue"]
    if isinstance(value.get("boolValue"), bool):
        return value["boolValue"]
    if "intValue" in value:
        number, text = fields.as_count(value["intValue"]), value["intValue"]
        return number if number is not None else text if isinstance(text, str) else None
    if isinstance(value.get("doubleValue"), int | float | str):
        try:
            return float(value["doubleValue"])  # also "NaN" and "Infinity", as the JSON mapping writes them
        except ValueError:
            return None
    items = value.get("arrayValue", {}).get("values") if isinstance(value.get("arrayValue"), dict) else None
    if isinstance(items, list):
        return [_value(item, depth + 1) for item in items]
    pairs = value.get("kvlistValue", {}).get("values") if isinstance(value.get("kvlistValue"), dict) else None
    if isinstance(pairs, list):
        return _attributes({"attributes": pairs}, "kvlistValue", depth)
    return value.get("bytesValue") if isinstance(value.get("bytesValue"), str) else None


def _invalid(problem: str) -> OtlpError:
    return OtlpError(f"Invalid OTLP trace export: {problem}. The entire export was rejected.")


def _array(value: Any, where: str) -> list:
    if value is not None and not isinstance(value, list):
        raise _invalid(f"{where} is not an array")
    return value or []


def _object(value: Any, where: str) -> dict:
    if value is not None and not isinstance(value, dict):
        raise _invalid(f"{where} is not an object")
    return value or {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _uint(value: Any) -> int:
    """An unsigned 64-bit number or decimal string; 0 for anything else."""
    integral = isinstance(value, float) and value.is_integer()  # a JSON number written with an exponent
    if integral or (isinstance(value, str) and value.isascii() and value.isdecimal()):
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**64 else 0


def _check_ids(resource_spans: list[dict]) -> None:
    for i, resource_span in enumerate(resource_spans):
        for j, scope_span in enumerate(resource_span["scopeSpans"]):
            for k, span in enumerate(scope_span["spans"]):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                if not TRACE_ID.fullmatch(span["traceId"]) or span["traceId"] == "0" * 32:
                    raise _invalid(f"{where} has no valid traceId (32 hex digits, not all zero)")
                if not SPAN_ID.fullmatch(span["spanId"]):
                    raise _invalid(f"{where} has no valid spanId (16 hex digits)")
                parent = span["parentSpanId"]
                span["parentSpanId"] = parent if SPAN_ID.fullmatch(parent) and parent != "0" * 16 else ""


class _Span(NamedTuple):
    """One span with what its observation and trace events share."""

    raw: dict
    view: SpanView
    start_ms: int
    end_ms: int
    name: str
    environment: str
    input: Any
    output: Any
    technical_metadata: dict[str, Any]  # attributes, resourceAttributes, scope


def spans_to_events(resource_spans: list[dict], project_id: str) -> list[dict]:
    """Langfuse ingestion events for a decoded export (see the module docstring)."""
    events: list[dict] = []
    full_traces: set[str] = set()
    earliest: dict[str, tuple[int, str, str]] = {}  # trace id -> (start, span id, environment)
    for resource_span in resource_spans:
        for scope_span in resource_span["scopeSpans"]:
            for raw in scope_span["spans"]:
                span = _prepare(raw, resource_span["resource"], scope_span["scope"])
                trace_id, span_id = raw["traceId"], raw["spanId"]
                trace_events, is_root = _trace_events(span, project_id)
                events += [*trace_events, _observation_event(span, project_id)]
                if is_root:
                    full_traces.add(trace_id)
                if trace_id not in earliest or (span.start_ms, span_id) < earliest[trace_id][:2]:
                    earliest[trace_id] = (span.start_ms, span_id, span.environment)
    for trace_id, (start_ms, span_id, environment) in earliest.items():
        if trace_id not in full_traces:
            body: dict[str, Any] = {"id": trace_id, "timestamp": _iso(start_ms), "environment": environment}
            events.append(_envelope(project_id, trace_id, span_id, "trace-shallow", "trace-create", body, start_ms))
    return events


def _prepare(raw: dict, resource: dict[str, Any], scope: dict[str, Any]) -> _Span:
    start, end = _ms(raw["startTimeUnixNano"]), _ms(raw["endTimeUnixNano"])
    start, end = (start if start is not None else end), (end if end is not None else start)
    start, end = start or 0, end or 0  # neither edge: the Unix epoch, never the clock
    scope_name, scope_version = scope.get("name") or "", scope.get("version") or ""
    view = SpanView(raw["attributes"], resource, scope_name, scope_version, start)
    input_value, output_value, io_keys = fields.input_output(view)
    technical: dict[str, Any] = {}
    if not scope_name.startswith("langfuse-sdk"):  # the Langfuse SDK's attributes are all mapped already
        technical["attributes"] = {k: stringify(v) for k, v in view.attributes.items() if k not in io_keys}
    technical["resourceAttributes"] = resource
    technical["scope"] = {"name": scope_name, "version": scope_version, "attributes": scope.get("attributes") or {}}
    name, environment = fields.observation_name(view, raw["name"]), fields.environment(view)
    return _Span(raw, view, start, end, name, environment, input_value, output_value, technical)


def _observation_event(span: _Span, project_id: str) -> dict:
    raw, view = span.raw, span.view
    kind = fields.observation_type(view, raw["name"])
    level, status_message = fields.level_and_status(view, raw["status"])
    body: dict[str, Any] = {
        "id": raw["spanId"],
        "traceId": raw["traceId"],
        "parentObservationId": raw["parentSpanId"] or None,
        "name": span.name,
        "startTime": _iso(span.start_ms),
        "endTime": _iso(span.end_ms),
        "environment": span.environment,
        "completionStartTime": fields.completion_start_time(view),
        "metadata": {**_metadata(view, "observation"), **span.technical_metadata},
        "level": level,
        "statusMessage": status_message,
        "version": fields.version(view),
        "input": span.input,
        "output": span.output,
    }
    if kind not in ("SPAN", "EVENT"):  # their ingestion schema has no model fields
        body["model"], body["modelParameters"] = fields.model(view), fields.model_parameters(view)
        body["usageDetails"], body["costDetails"] = fields.usage_details(view), fields.cost_details(view)
    prompt = fields.prompt(view) if kind == "GENERATION" else None
    if prompt:
        body["promptName"], body["promptVersion"] = prompt
    event_type = f"{kind.lower()}-create"
    return _envelope(project_id, raw["traceId"], raw["spanId"], "observation", event_type, body, span.end_ms)


def _trace_events(span: _Span, project_id: str) -> tuple[list[dict], bool]:
    """The span's trace-create (full for a root, trace-level attributes only otherwise) and whether it is full."""
    raw, view = span.raw, span.view
    attributes = view.attributes
    trace_name = fields.as_text(attributes.get("langfuse.trace.name"))
    body: dict[str, Any] = {"id": raw["traceId"], "timestamp": _iso(span.start_ms), "environment": span.environment}
    body |= fields.trace_context(view)
    body |= {key: parse_json(attributes.get(f"langfuse.trace.{key}")) for key in ("input", "output")}
    is_root = not raw["parentSpanId"] or as_bool(attributes.get("langfuse.internal.as_root")) is True
    if is_root:
        body["name"] = (trace_name or span.name)[:MAX_TRACE_NAME]
        body["version"] = fields.version(view)
        body["metadata"] = {**_metadata(view, "trace"), **_metadata(view, "observation"), **span.technical_metadata}
        body["input"] = body["input"] if body["input"] is not None else span.input
        body["output"] = body["output"] if body["output"] is not None else span.output
    elif any(key.startswith("langfuse.trace.") for key in attributes) or any(
        body[key] is not None for key in ("userId", "sessionId", "tags", "public")
    ):
        body["name"] = trace_name[:MAX_TRACE_NAME] if trace_name else None
        body["metadata"] = _user_metadata(attributes, "trace", common=False) or None
    else:
        return [], False
    kind = "trace" if is_root else "trace-update"
    return [_envelope(project_id, raw["traceId"], raw["spanId"], kind, "trace-create", body, span.start_ms)], is_root


def _metadata(view: SpanView, domain: str) -> dict[str, Any]:
    """User metadata of ``domain`` from the resource, then from the span (the span's keys win)."""
    return {**_user_metadata(view.resource, domain), **_user_metadata(view.attributes, domain)}


def _envelope(project_id: str, trace_id: str, span_id: str, kind: str, event_type: str, body: dict, ms: int) -> dict:
    event_id = uuid.uuid5(EVENT_ID_NAMESPACE, f"{project_id}/{trace_id}/{span_id}/{kind}")
    present = {key: value for key, value in body.items() if value is not None}
    return {"id": str(event_id), "timestamp": _iso(ms), "type": event_type, "project_id": project_id, "body": present}


def _ms(nanos: int) -> int | None:
    """Nanoseconds truncated to milliseconds; None for a missing (0) or out-of-range time."""
    ms = nanos // 1_000_000
    return ms if nanos > 0 and iso_ms(ms) else None


def _iso(ms: int) -> str:
    return iso_ms(ms) or "1970-01-01T00:00:00.000Z"  # every ms given here passed iso_ms already


def _user_metadata(attributes: dict[str, Any], domain: str, common: bool = True) -> dict[str, Any]:
    """``langfuse.<domain>.metadata`` (an object) and its ``.<key>`` attributes; with ``common`` also
    ``langfuse.metadata.<key>`` and ``ai.telemetry.metadata.<key>``. Values are JSON-decoded when they are JSON."""
    own = f"langfuse.{domain}.metadata"
    whole = parse_json(attributes.get(own))
    found = dict(whole) if isinstance(whole, dict) else {}  # a non-object value is dropped, as Langfuse does
    prefixes = (own + ".", "langfuse.metadata.", "ai.telemetry.metadata.") if common else (own + ".",)
    for key, value in attributes.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix and len(key) > len(prefix):
            found[key[len(prefix) :]] = parse_json(value)
    return {key: value for key, value in found.items() if key not in fields.BLOCKED_KEYS}
