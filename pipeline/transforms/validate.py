"""Parse and validate one Kafka message into an ``IngestionEvent``, or reject it with a reason.

As lenient as Langfuse's ingestion API: unknown body keys are ignored, invalid environments become
"default", invalid usage numbers are dropped (see ``normalize``). What Langfuse answers with a 400 is a
``Rejected`` here, and the worker dead-letters it with ``reason``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
import orjson

ENTITY_BY_TYPE: dict[str, str] = {
    "trace-create": "trace",
    "score-create": "score",
    "sdk-log": "sdk_log",
    "observation-create": "observation",
    "observation-update": "observation",
    **{
        f"{kind}-create": "observation"
        for kind in (
            "event",
            "span",
            "generation",
            "agent",
            "tool",
            "chain",
            "retriever",
            "evaluator",
            "embedding",
            "guardrail",
        )
    },
    "span-update": "observation",
    "generation-update": "observation",
    "trace-delete": "trace_deletion",
}
UPDATE_TYPES = frozenset({"span-update", "generation-update", "observation-update"})
# The key rule names the entity a message changes; a trace-delete changes its trace.
KEY_ENTITY = {"trace_deletion": "trace"}
MAX_ID_LENGTH = 800
MAX_TRACE_NAME_LENGTH = 1000

Json = Any
Unset = msgspec.UnsetType
ModelParameterValue = str | int | float | bool | None | list[str] | dict[str, str]
UsageUnit = Literal["CHARACTERS", "TOKENS", "SECONDS", "MILLISECONDS", "IMAGES", "REQUESTS"]
ScoreSource = Literal["API", "EVAL", "ANNOTATION"]
MAX_TEXT_SCORE_LENGTH = 500
# A project id becomes part of object keys (media/<project>/...), file paths, Kafka keys and ClickHouse values:
# it starts with a letter or digit (so never ".", ".." or a hidden name) and uses no other separator than . _ : -
PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,255}")
PROJECT_ID_RULE = "project_id must be 1 to 256 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit"
# Stored JSON is written by orjson, which refuses more than 254 levels; what a user can nest is capped below that.
MAX_NESTING = 200
NESTED_FIELDS = ("input", "output", "metadata")
ObservationLevel = Literal["DEBUG", "DEFAULT", "WARNING", "ERROR"]
ScoreDataType = Literal["NUMERIC", "CATEGORICAL", "BOOLEAN", "CORRECTION", "TEXT"]


class Envelope(msgspec.Struct):
    id: str
    timestamp: str
    type: str
    body: dict[str, Json]
    project_id: str
    metadata: Json = None


class LegacyUsage(msgspec.Struct):
    input: int | None = None
    output: int | None = None
    total: int | None = None
    unit: UsageUnit | None = None
    promptTokens: int | None = None
    completionTokens: int | None = None
    totalTokens: int | None = None
    inputCost: float | None = None
    outputCost: float | None = None
    totalCost: float | None = None


class TraceBody(msgspec.Struct, omit_defaults=True):
    id: str | msgspec.UnsetType | None = msgspec.UNSET
    timestamp: str | msgspec.UnsetType | None = msgspec.UNSET
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    externalId: str | msgspec.UnsetType | None = msgspec.UNSET
    input: Json = msgspec.UNSET
    output: Json = msgspec.UNSET
    sessionId: str | msgspec.UnsetType | None = msgspec.UNSET
    release: str | msgspec.UnsetType | None = msgspec.UNSET
    version: str | msgspec.UnsetType | None = msgspec.UNSET
    userId: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Json = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    environment: Json = msgspec.UNSET  # never rejected: anything invalid becomes "default"
    public: bool | msgspec.UnsetType | None = msgspec.UNSET


class ObservationBody(msgspec.Struct, omit_defaults=True):
    id: str | msgspec.UnsetType | None = msgspec.UNSET
    traceId: str | msgspec.UnsetType | None = msgspec.UNSET
    type: Literal["SPAN", "GENERATION", "EVENT"] | msgspec.UnsetType | None = msgspec.UNSET
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    startTime: str | msgspec.UnsetType | None = msgspec.UNSET
    endTime: str | msgspec.UnsetType | None = msgspec.UNSET
    completionStartTime: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Json = msgspec.UNSET
    input: Json = msgspec.UNSET
    output: Json = msgspec.UNSET
    level: ObservationLevel | msgspec.UnsetType | None = msgspec.UNSET
    statusMessage: str | msgspec.UnsetType | None = msgspec.UNSET
    parentObservationId: str | msgspec.UnsetType | None = msgspec.UNSET
    version: str | msgspec.UnsetType | None = msgspec.UNSET
    environment: Json = msgspec.UNSET  # never rejected: anything invalid becomes "default"
    model: str | msgspec.UnsetType | None = msgspec.UNSET
    modelParameters: dict[str, ModelParameterValue] | Unset | None = msgspec.UNSET
    usage: LegacyUsage | Unset | None = msgspec.UNSET
    usageDetails: dict[str, Json] | Unset | None = msgspec.UNSET
    costDetails: dict[str, Json] | Unset | None = msgspec.UNSET
    promptName: str | msgspec.UnsetType | None = msgspec.UNSET
    promptVersion: Annotated[int, msgspec.Meta(ge=0, le=65535)] | Unset | None = msgspec.UNSET


class ScoreBody(msgspec.Struct, omit_defaults=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    value: float | str
    id: str | msgspec.UnsetType | None = msgspec.UNSET
    timestamp: str | msgspec.UnsetType | None = msgspec.UNSET
    traceId: str | msgspec.UnsetType | None = msgspec.UNSET
    observationId: str | msgspec.UnsetType | None = msgspec.UNSET
    sessionId: str | msgspec.UnsetType | None = msgspec.UNSET
    datasetRunId: str | msgspec.UnsetType | None = msgspec.UNSET
    comment: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Json = msgspec.UNSET
    dataType: ScoreDataType | Unset = msgspec.UNSET
    configId: str | msgspec.UnsetType | None = msgspec.UNSET
    environment: Json = msgspec.UNSET  # never rejected: anything invalid becomes "default"
    source: ScoreSource | Unset = msgspec.UNSET
    queueId: str | msgspec.UnsetType | None = msgspec.UNSET
    executionTraceId: str | msgspec.UnsetType | None = msgspec.UNSET
    authorUserId: str | msgspec.UnsetType | None = msgspec.UNSET


class SdkLogBody(msgspec.Struct):
    log: Json


class TraceDeleteBody(msgspec.Struct):
    """Deletes a trace with its observations, scores, archived payloads and unreferenced media."""

    id: str | None = None


BODY_TYPE_BY_ENTITY: dict[str, type[msgspec.Struct]] = {
    "sdk_log": SdkLogBody,
    "trace": TraceBody,
    "observation": ObservationBody,
    "score": ScoreBody,
    "trace_deletion": TraceDeleteBody,
}


@dataclass(frozen=True, slots=True)
class IngestionEvent:
    project_id: str
    event_id: str
    timestamp_ms: int
    type: str
    entity: str
    entity_id: str
    body: msgspec.Struct
    is_update: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    # A short stable category for metrics and dead-letter filters: too_large, malformed_json,
    # invalid_envelope, unknown_type, invalid_body.
    kind: str = "invalid_body"


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
        return Rejected(f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes", "too_large")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected(f"malformed JSON: {exc}", "malformed_json")
    try:
        envelope = msgspec.convert(document, Envelope)
    except msgspec.ValidationError as exc:
        return Rejected(f"invalid envelope: {exc}", "invalid_envelope")
    rejected = _check_envelope(envelope)
    if rejected:
        return rejected
    entity = ENTITY_BY_TYPE[envelope.type]
    if entity == "score" and not given(envelope.body.get("id")):
        envelope.body["id"] = envelope.id
    try:
        body = msgspec.convert(envelope.body, BODY_TYPE_BY_ENTITY[entity])
    except msgspec.ValidationError as exc:
        return _reject(envelope, f"invalid {envelope.type} body: {exc}")
    if isinstance(body, SdkLogBody):
        return None if body.log is not None else _reject(envelope, "sdk-log body needs a log")
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


def message_key(project_id: str, entity: str, entity_id: str) -> bytes:
    """The ingestion topic's key rule: ``<project_id>:<entity>:<id>`` (topics/README.md)."""
    return f"{project_id}:{KEY_ENTITY.get(entity, entity)}:{entity_id}".encode()


def _check_envelope(envelope: Envelope) -> Rejected | None:
    problem = check_id(envelope.id, "event id")
    if problem:
        return Rejected(problem, "invalid_envelope")
    if not PROJECT_ID.fullmatch(envelope.project_id):
        return Rejected(PROJECT_ID_RULE, "invalid_envelope")
    if envelope.type not in ENTITY_BY_TYPE:
        return _reject(envelope, f"unknown event type {envelope.type!r}", "unknown_type")
    try:
        parse_timestamp_ms(envelope.timestamp)
    except ValueError as exc:
        return _reject(envelope, f"invalid envelope timestamp: {exc}", "invalid_envelope")
    return None


NOT_SET: tuple[Any, ...] = (None, msgspec.UNSET, "")


def given(value: Any) -> bool:
    """Present and not null: the JavaScript ``value != null`` that Langfuse's rules test."""
    return value is not None and value is not msgspec.UNSET


def _check_body(event_type: str, body: msgspec.Struct) -> str | None:
    body_id = getattr(body, "id", None)
    if not given(body_id):
        # Langfuse reports these as successes and then silently skips them; we say why instead.
        return f"{event_type} body has no id, so the entity cannot be identified"
    problem = check_id(body_id, "body.id")
    if problem:
        return problem
    if isinstance(body, ObservationBody) and given(body.traceId):
        problem = check_id(body.traceId, "body.traceId")
        if problem:
            return problem
    if isinstance(body, TraceBody) and given(body.name) and len(body.name) > MAX_TRACE_NAME_LENGTH:
        return f"trace name is longer than {MAX_TRACE_NAME_LENGTH} characters"
    if isinstance(body, ObservationBody):
        if given(body.promptName) != given(body.promptVersion):
            return "promptName and promptVersion must be set together"
        if not given(body.type) and event_type.startswith("observation-"):
            return f"{event_type} body needs a type (SPAN, GENERATION or EVENT)"
        nested = isinstance(body.modelParameters, dict) and any(
            isinstance(value, list | dict) for value in body.modelParameters.values()
        )
        if nested and event_type.startswith("observation-"):
            return f"{event_type} modelParameters values must be strings, numbers or booleans"
    if isinstance(body, ScoreBody):
        problem = _check_score(body)
        if problem:
            return problem
    for field in ("timestamp", "startTime", "endTime", "completionStartTime"):
        value = getattr(body, field, None)
        if given(value):
            try:
                parse_timestamp_ms(value)
            except ValueError as exc:
                return f"invalid body.{field}: {exc}"
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


def _reject(envelope: Envelope, reason: str, kind: str = "invalid_body") -> Rejected:
    return Rejected(f"event {envelope.id!r}: {reason}", kind)
