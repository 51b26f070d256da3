"""The wire model of the ingestion topic: Langfuse's event types, their bodies as typed msgspec structs, and the
key rule. ``EVENT_DECODER`` decodes a message straight into a typed event (one pass, no dict in between); what it
cannot decode goes through the lenient path in ``validate``, which says precisely why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

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
    "media-upload": "media_upload",
}
# lfpipe's own event types, not Langfuse's: producers and lfpipe tools send them, the HTTP gateway refuses them.
EXTENSION_TYPES = frozenset({"trace-delete", "media-upload"})
UPDATE_TYPES = frozenset({"span-update", "generation-update", "observation-update"})
# The key rule names the entity a message changes; a trace-delete changes its trace.
KEY_ENTITY = {"trace_deletion": "trace", "media_upload": "media"}
Json = Any
Unset = msgspec.UnsetType
ModelParameterValue = str | int | float | bool | None | list[str] | dict[str, str]
UsageUnit = Literal["CHARACTERS", "TOKENS", "SECONDS", "MILLISECONDS", "IMAGES", "REQUESTS"]
ScoreSource = Literal["API", "EVAL", "ANNOTATION"]
ObservationLevel = Literal["DEBUG", "DEFAULT", "WARNING", "ERROR"]
ScoreDataType = Literal["NUMERIC", "CATEGORICAL", "BOOLEAN", "CORRECTION", "TEXT"]
MAX_TEXT_SCORE_LENGTH = 500


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


class MediaUploadBody(msgspec.Struct):
    """A file an SDK uploaded through the gateway, linked to a trace or observation field (see ``media_api``)."""

    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{22}$")]  # Langfuse's media id
    traceId: Annotated[str, msgspec.Meta(min_length=1)]
    field: Literal["input", "output", "metadata"]
    contentType: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.+-]{0,62}/[a-z0-9][a-z0-9.+-]{0,126}$")]
    contentLength: Annotated[int, msgspec.Meta(ge=1)]
    sha256Hash: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+/]{43}=$")]
    observationId: str | None = None


BODY_TYPE_BY_ENTITY: dict[str, type[msgspec.Struct]] = {
    "sdk_log": SdkLogBody,
    "trace": TraceBody,
    "observation": ObservationBody,
    "score": ScoreBody,
    "trace_deletion": TraceDeleteBody,
    "media_upload": MediaUploadBody,
}


class TypedEvent(msgspec.Struct, tag_field="type", kw_only=True):
    """An envelope whose ``type`` decides its body's struct (one subclass per event type, below)."""

    id: str
    timestamp: str
    project_id: str
    metadata: Json = None


def _typed_event(event_type: str) -> type[TypedEvent]:
    name = "".join(part.title() for part in event_type.split("-"))
    body = BODY_TYPE_BY_ENTITY[ENTITY_BY_TYPE[event_type]]
    return msgspec.defstruct(name, [("body", body)], bases=(TypedEvent,), tag=event_type, kw_only=True)


TYPED_EVENTS = {event_type: _typed_event(event_type) for event_type in ENTITY_BY_TYPE}
TYPE_OF_EVENT = {cls: event_type for event_type, cls in TYPED_EVENTS.items()}
EVENT_DECODER = msgspec.json.Decoder(Union[tuple(TYPED_EVENTS.values())])  # noqa: UP007 - a runtime union of classes


def message_key(project_id: str, entity: str, entity_id: str) -> bytes:
    """The ingestion topic's key rule: ``<project_id>:<entity>:<id>`` (topics/README.md)."""
    return f"{project_id}:{KEY_ENTITY.get(entity, entity)}:{entity_id}".encode()
