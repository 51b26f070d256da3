"""Parse and validate one Kafka message into an ``IngestionEvent``, or reject it with a reason.

As lenient as Langfuse's ingestion API: unknown body keys are ignored, invalid environments become
"default", invalid usage numbers are dropped (see ``normalize``). What Langfuse answers with a 400 is a
``Rejected`` here, and the worker dead-letters it with ``reason``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
import orjson

from pipeline.outcomes import ReasonKind
from pipeline.transforms.events import (
    BODY_TYPE_BY_ENTITY,
    ENTITY_BY_TYPE,
    EVENT_DECODER,
    MAX_TEXT_SCORE_LENGTH,
    TYPE_OF_EVENT,
    UPDATE_TYPES,
    Envelope,
    Json,
    MediaUploadBody,
    ObservationBody,
    ScoreBody,
    SdkLogBody,
    TraceBody,
    TraceDeleteBody,
    TypedEvent,
)
from pipeline.transforms.media import media_id_of_hash

UNSET = msgspec.UNSET

MAX_ID_LENGTH = 800
MAX_TRACE_NAME_LENGTH = 1000

# A project id becomes part of object keys (media/<project>/...), file paths, Kafka keys and ClickHouse values:
# it starts with a letter or digit (so never ".", ".." or a hidden name) and uses no other separator than . _ : -
PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,255}")
PROJECT_ID_RULE = "project_id must be 1 to 256 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit"
# Stored JSON is written by orjson, which refuses more than 254 levels; what a user can nest is capped below that.
MAX_NESTING = 200
NESTED_FIELDS = ("input", "output", "metadata")
# Every digit byte as "1", everything else as "0": 20 ones in a row is a number too long for 64 bits.
DIGITS_AS_ONES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
TWENTY_DIGITS = b"1" * 20


class IngestionEvent(msgspec.Struct, frozen=True, gc=False):
    project_id: str
    event_id: str
    timestamp_ms: int
    type: str
    entity: str
    entity_id: str
    body: msgspec.Struct
    is_update: bool


class Rejected(msgspec.Struct, frozen=True, gc=False):
    reason: str
    kind: ReasonKind = ReasonKind.INVALID_BODY


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as Langfuse writes times: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)."""
    return f"{EPOCH + timedelta(milliseconds=ms):%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


# ClickHouse DateTime64(3) holds 1900-01-01 to 2299-12-31 (UTC); anything outside would fail every insert.
EARLIEST_MS = -2_208_988_800_000
LATEST_MS = 10_413_791_999_999


@lru_cache(maxsize=65536)
def parse_timestamp_ms(value: str) -> int:
    """ISO 8601 with an offset (or Z) to epoch milliseconds; ValueError otherwise."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    ms = int(parsed.timestamp() * 1000)
    if not EARLIEST_MS <= ms <= LATEST_MS:
        raise ValueError(f"timestamp {value!r} is outside 1900-01-01..2299-12-31 UTC")
    return ms


@lru_cache(maxsize=4096)
def valid_project_id(value: str) -> bool:
    return PROJECT_ID.fullmatch(value) is not None


def check_id(value: str, what: str) -> str | None:
    if not value:
        return f"{what} is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} is longer than {MAX_ID_LENGTH} characters"
    if "\r" in value:
        return f"{what} cannot contain carriage return characters"
    return None


def parse_event(raw: bytes, max_bytes: int) -> IngestionEvent | Rejected | None:
    """One Kafka message value to an event. ``None`` means a valid message that stores nothing (sdk-log)."""
    if len(raw) > max_bytes:
        return Rejected(f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes", ReasonKind.TOO_LARGE)
    # Integers beyond 64 bits: orjson reads them as floats, msgspec as ints; keep orjson's reading everywhere.
    if TWENTY_DIGITS not in raw.translate(DIGITS_AS_ONES):
        try:
            event = EVENT_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass  # the lenient path below says precisely what is wrong
        else:
            return _accept(event, raw)
    return _parse_lenient(raw)


def _accept(event: TypedEvent, raw: bytes) -> IngestionEvent | Rejected | None:
    """The checks a typed decode cannot express, then the event."""
    envelope = Envelope(event.id, event.timestamp, TYPE_OF_EVENT[type(event)], {}, event.project_id, event.metadata)
    return _check_envelope(envelope) or _checked(envelope, event.body, raw)  # type: ignore[attr-defined]


def _parse_lenient(raw: bytes) -> IngestionEvent | Rejected | None:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected(f"malformed JSON: {exc}", ReasonKind.MALFORMED_JSON)
    try:
        envelope = msgspec.convert(document, Envelope)
    except msgspec.ValidationError as exc:
        return Rejected(f"invalid envelope: {exc}", ReasonKind.INVALID_ENVELOPE)
    rejected = _check_envelope(envelope)
    if rejected:
        return rejected
    try:
        body = msgspec.convert(envelope.body, BODY_TYPE_BY_ENTITY[ENTITY_BY_TYPE[envelope.type]])
    except msgspec.ValidationError as exc:
        return _reject(envelope, f"invalid {envelope.type} body: {exc}")
    return _checked(envelope, body, raw)


def _checked(envelope: Envelope, body: msgspec.Struct, raw: bytes) -> IngestionEvent | Rejected | None:
    entity = ENTITY_BY_TYPE[envelope.type]
    if isinstance(body, SdkLogBody):
        return None if body.log is not None else _reject(envelope, "sdk-log body needs a log")
    if isinstance(body, ScoreBody) and not given(body.id):
        body.id = envelope.id  # a score without an id takes the envelope's (Langfuse: a random one)
    problem = _check_body(envelope.type, body) or _check_nesting(raw, body)
    if problem:
        return _reject(envelope, problem)
    return IngestionEvent(
        project_id=envelope.project_id,
        event_id=envelope.id,
        timestamp_ms=parse_timestamp_ms(envelope.timestamp),
        type=envelope.type,
        entity=entity,
        entity_id=body.id,  # type: ignore[attr-defined]
        body=body,
        is_update=envelope.type in UPDATE_TYPES,
    )


def _check_envelope(envelope: Envelope) -> Rejected | None:
    problem = check_id(envelope.id, "event id")
    if problem:
        return Rejected(problem, ReasonKind.INVALID_ENVELOPE)
    if not valid_project_id(envelope.project_id):
        return Rejected(PROJECT_ID_RULE, ReasonKind.INVALID_ENVELOPE)
    if envelope.type not in ENTITY_BY_TYPE:
        return _reject(envelope, f"unknown event type {envelope.type!r}", ReasonKind.UNKNOWN_TYPE)
    try:
        parse_timestamp_ms(envelope.timestamp)
    except ValueError as exc:
        return _reject(envelope, f"invalid envelope timestamp: {exc}", ReasonKind.INVALID_ENVELOPE)
    return None


NOT_SET: tuple[Any, ...] = (None, msgspec.UNSET, "")


def given(value: Any) -> bool:
    """Present and not null: the JavaScript ``value != null`` that Langfuse's rules test."""
    return value is not None and value is not msgspec.UNSET


def _check_body(event_type: str, body: msgspec.Struct) -> str | None:
    body_id = getattr(body, "id", None)
    if body_id is None or body_id is UNSET:
        # Langfuse reports these as successes and then silently skips them; we say why instead.
        return f"{event_type} body has no id, so the entity cannot be identified"
    problem = check_id(body_id, "body.id") or _BODY_CHECKS[type(body)](event_type, body)
    if problem:
        return problem
    for field in TIMESTAMP_FIELDS[type(body)]:
        value = getattr(body, field)
        if value is not None and value is not UNSET:
            try:
                parse_timestamp_ms(value)
            except ValueError as exc:
                return f"invalid body.{field}: {exc}"
    return None


def _check_trace(event_type: str, body: TraceBody) -> str | None:
    name = body.name
    if name is not None and name is not UNSET and len(name) > MAX_TRACE_NAME_LENGTH:
        return f"trace name is longer than {MAX_TRACE_NAME_LENGTH} characters"
    return None


def _check_observation(event_type: str, body: ObservationBody) -> str | None:
    if given(body.traceId):
        problem = check_id(body.traceId, "body.traceId")  # type: ignore[arg-type]
        if problem:
            return problem
    if given(body.promptName) != given(body.promptVersion):
        return "promptName and promptVersion must be set together"
    if event_type.startswith("observation-"):
        if not given(body.type):
            return f"{event_type} body needs a type (SPAN, GENERATION or EVENT)"
        parameters = body.modelParameters
        if isinstance(parameters, dict) and any(isinstance(value, list | dict) for value in parameters.values()):
            return f"{event_type} modelParameters values must be strings, numbers or booleans"
    return None


def nesting(value: Json, limit: int) -> int:
    """How many levels of arrays and objects ``value`` nests (0 for a scalar), counting no further than
    ``limit + 1``."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        children = current.values() if isinstance(current, dict) else current if isinstance(current, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _check_nesting(raw: bytes, body: msgspec.Struct) -> str | None:
    # Every level opens a bracket: with few brackets in the message, nothing can be too deep (the common case).
    if raw.count(b"{") + raw.count(b"[") <= MAX_NESTING:
        return None
    for name in NESTED_FIELDS:
        value = getattr(body, name, msgspec.UNSET)
        if value is not msgspec.UNSET and nesting(value, MAX_NESTING) > MAX_NESTING:
            return f"body.{name} nests arrays and objects more than {MAX_NESTING} levels deep"
    return None


def _check_score(body: ScoreBody) -> str | None:
    targets = [name for name in ("traceId", "sessionId", "datasetRunId") if getattr(body, name) not in NOT_SET]
    if len(targets) != 1:
        return f"a score needs exactly one of traceId, sessionId, datasetRunId (got {len(targets)})"
    if body.observationId not in NOT_SET and body.traceId in NOT_SET:
        return "a score with observationId needs its traceId"
    if body.dataType == "CORRECTION" and given(body.configId):
        return "a CORRECTION score cannot have a configId"
    if body.dataType == "TEXT" and isinstance(body.value, str) and not 0 < len(body.value) <= MAX_TEXT_SCORE_LENGTH:
        return f"a TEXT score value needs 1 to {MAX_TEXT_SCORE_LENGTH} characters"
    return None


def _check_media_upload(body: MediaUploadBody) -> str | None:
    if media_id_of_hash(body.sha256Hash) != body.id:
        return "a media-upload's id must be the first 22 characters of its sha256Hash in URL-safe base64"
    return check_id(body.traceId, "body.traceId") or (
        check_id(body.observationId, "body.observationId") if body.observationId is not None else None
    )


_BODY_CHECKS: dict[type, Callable[[str, Any], str | None]] = {
    TraceBody: _check_trace,
    ObservationBody: _check_observation,
    ScoreBody: lambda _, body: _check_score(body),
    TraceDeleteBody: lambda _, body: None,
    MediaUploadBody: lambda _, body: _check_media_upload(body),
}
TIMESTAMP_FIELDS: dict[type, tuple[str, ...]] = {
    TraceBody: ("timestamp",),
    ObservationBody: ("startTime", "endTime", "completionStartTime"),
    ScoreBody: ("timestamp",),
    TraceDeleteBody: (),
    MediaUploadBody: (),
}


def _reject(envelope: Envelope, reason: str, kind: ReasonKind = ReasonKind.INVALID_BODY) -> Rejected:
    return Rejected(f"event {envelope.id!r}: {reason}", kind)
