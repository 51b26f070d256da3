"""One validated event to the fields it sets on its entity, in ClickHouse column names.

A field missing from the set is JavaScript's ``undefined`` (never overwrites); ``None`` is ``null``
(overwrites where Langfuse passes null through). Timestamps are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from pipeline.transforms.catalog import ScoreConfig
from pipeline.transforms.events import LegacyUsage, ObservationBody, ScoreBody, TraceBody
from pipeline.transforms.normalize import (
    metadata_fields,
    normalize_environment,
    provided_usage_and_cost,
    stringify,
)
from pipeline.transforms.validate import IngestionEvent, given, parse_timestamp_ms

OBSERVATION_TYPE_BY_EVENT = {
    "span": "SPAN",
    "generation": "GENERATION",
    "event": "EVENT",
    "agent": "AGENT",
    "tool": "TOOL",
    "chain": "CHAIN",
    "retriever": "RETRIEVER",
    "evaluator": "EVALUATOR",
    "embedding": "EMBEDDING",
    "guardrail": "GUARDRAIL",
}

# The observation type an event type sets (legacy observation-create/-update name theirs in the body).
TYPE_OF_OBSERVATION_EVENT = {
    f"{kind}-{action}": observation_type
    for kind, observation_type in OBSERVATION_TYPE_BY_EVENT.items()
    for action in ("create", "update")
}
SortKey = tuple[int, int, str]


class InvalidEvent(ValueError):
    """A structurally valid event that Langfuse's worker would reject (for example a score out of range)."""


class EventFields(msgspec.Struct, frozen=True, gc=False):
    entity: str
    project_id: str
    entity_id: str
    sort_key: SortKey
    fields: dict[str, Any]
    metadata: dict[str, Any] | None
    tags: tuple[str, ...]


def sort_key(event: IngestionEvent) -> SortKey:
    """Envelope time, then creates before updates, then the event id: a total order that is a property of the
    event alone, so a producer retry at another offset sorts exactly like the original (Langfuse breaks such
    ties by arrival order instead)."""
    return (event.timestamp_ms, 1 if event.is_update else 0, event.event_id)


ScoreConfigLookup = Callable[[str, str], "ScoreConfig | None"]


# Kafka headers a producer may set to attribute scores, as Langfuse does from its HTTP request headers.
ATTRIBUTION_HEADERS = {
    "x-langfuse-public-key": "ingestion_api_key",
    "x-langfuse-sdk-name": "ingestion_sdk_name",
    "x-langfuse-sdk-version": "ingestion_sdk_version",
}


def fields_of(
    event: IngestionEvent,
    score_config: ScoreConfigLookup | None = None,
    headers: tuple[tuple[str, bytes], ...] = (),
) -> EventFields:
    body = event.body
    if isinstance(body, TraceBody):
        fields = _trace_fields(event, body)
    elif isinstance(body, ObservationBody):
        fields = _observation_fields(event, body)
    elif isinstance(body, ScoreBody):
        config = None
        if given(body.configId):
            config = score_config(event.project_id, body.configId) if score_config else None
            if config is None:
                raise InvalidEvent(f"score config {body.configId!r} does not exist in project {event.project_id!r}")
        fields = _score_fields(event, body, config)
        for name, value in headers:
            column = ATTRIBUTION_HEADERS.get(name.lower())
            if column:
                fields[column] = value.decode(errors="replace")
    else:  # pragma: no cover - validate only builds the three body types
        raise InvalidEvent(f"no field mapping for {type(body).__name__}")
    metadata = metadata_fields(body.metadata) if given(getattr(body, "metadata", None)) else None
    tags = tuple(body.tags) if isinstance(body, TraceBody) and given(body.tags) else ()
    return EventFields(event.entity, event.project_id, event.entity_id, sort_key(event), fields, metadata, tags)


# Body field -> column, computed once per body type. "Nullable" ones are overwritten by a null, as in Langfuse.
TRACE_NULLABLE = (("name", "name"), ("userId", "user_id"), ("release", "release"), ("version", "version"))
TRACE_NULLABLE += (("sessionId", "session_id"),)
OBSERVATION_NULLABLE = (("name", "name"), ("level", "level"), ("model", "provided_model_name"))
OBSERVATION_KEPT = (
    ("statusMessage", "status_message"),
    ("parentObservationId", "parent_observation_id"),
    ("version", "version"),
)
OBSERVATION_TIMES = (("endTime", "end_time"), ("completionStartTime", "completion_start_time"))
SCORE_KEPT = (
    ("traceId", "trace_id"),
    ("observationId", "observation_id"),
    ("sessionId", "session_id"),
    ("datasetRunId", "dataset_run_id"),
    ("configId", "config_id"),
    ("queueId", "queue_id"),
    ("executionTraceId", "execution_trace_id"),
    ("authorUserId", "author_user_id"),
)
UNSET = msgspec.UNSET


def _copy(
    fields: dict[str, Any], body: msgspec.Struct, mapping: tuple[tuple[str, str], ...], null_overwrites: bool
) -> None:
    for source, column in mapping:
        value = getattr(body, source)
        if value is UNSET or (value is None and not null_overwrites):
            continue
        fields[column] = value


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: {} and [] are truthy; null, false, 0, NaN and "" are not."""
    if value is None or value is False or value is msgspec.UNSET or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    return True


def _io(fields: dict[str, Any], body: TraceBody | ObservationBody) -> None:
    # Only truthy values compete for "last input/output", exactly like Langfuse.
    for name in ("input", "output"):
        value = getattr(body, name)
        if js_truthy(value):
            fields[name] = stringify(value)


def _ms(value: str | msgspec.UnsetType | None, default: int | None = None) -> int | None:
    return parse_timestamp_ms(value) if isinstance(value, str) else default


def _trace_fields(event: IngestionEvent, body: TraceBody) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "timestamp": _ms(body.timestamp, event.timestamp_ms),
        "environment": normalize_environment(body.environment if given(body.environment) else None),
    }
    _copy(fields, body, TRACE_NULLABLE, null_overwrites=True)
    if given(body.public):
        # Langfuse writes public=false on every trace-create, resetting a flag set in the UI; we only set it
        # when the producer says so.
        fields["public"] = body.public
    _io(fields, body)
    return fields


def _observation_type(event: IngestionEvent, body: ObservationBody) -> str:
    return TYPE_OF_OBSERVATION_EVENT.get(event.type) or str(body.type)


def _observation_fields(event: IngestionEvent, body: ObservationBody) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "type": _observation_type(event, body),
        "start_time": _ms(body.startTime, event.timestamp_ms),
        "environment": normalize_environment(body.environment if given(body.environment) else None),
    }
    if given(body.traceId):
        fields["trace_id"] = body.traceId
    _copy(fields, body, OBSERVATION_NULLABLE, null_overwrites=True)
    _copy(fields, body, OBSERVATION_KEPT, null_overwrites=False)
    for source, column in OBSERVATION_TIMES:
        stamp = getattr(body, source)
        if stamp.__class__ is str:
            fields[column] = parse_timestamp_ms(stamp)
    if body.modelParameters:
        fields["model_parameters"] = stringify(body.modelParameters)
    if given(body.promptName):
        fields["prompt_name"] = body.promptName
        fields["prompt_version"] = body.promptVersion
    legacy = msgspec.structs.asdict(body.usage) if isinstance(body.usage, LegacyUsage) else None
    usage, cost = provided_usage_and_cost(legacy, body.usageDetails, body.costDetails)
    if usage:
        fields["provided_usage_details"] = usage
    if cost:
        fields["provided_cost_details"] = cost
    _io(fields, body)
    return fields


def _score_fields(event: IngestionEvent, body: ScoreBody, config: ScoreConfig | None) -> dict[str, Any]:
    if body.source == "ANNOTATION" and config is None and body.dataType != "CORRECTION":
        raise InvalidEvent(f"ANNOTATION score {body.name!r} needs a configId")
    if config is not None:
        if config.is_archived:
            raise InvalidEvent(f"score config {config.id!r} is archived")
        # The config decides name and data type, as in Langfuse.
        body = msgspec.structs.replace(body, name=config.name, dataType=config.data_type)
    data_type, value, string_value = _score_value(body)
    if config is not None:
        value, string_value = _check_against_config(config, data_type, value, string_value, body.value)
    fields: dict[str, Any] = {
        "timestamp": event.timestamp_ms,  # Langfuse stamps scores with the envelope time
        "environment": normalize_environment(body.environment if given(body.environment) else None),
        "name": body.name,
        "value": value,
        "data_type": data_type,
        "string_value": string_value,
        "source": body.source if given(body.source) else "API",
    }
    if data_type == "CORRECTION":
        # Only a correction keeps its text in long_string_value; TEXT keeps it in string_value (Langfuse's test
        # "should correctly ingest a TEXT score").
        fields["long_string_value"] = string_value or ""
        fields["string_value"] = None
    _copy(fields, body, SCORE_KEPT, null_overwrites=False)
    # A null comment on update clears the comment (Langfuse #4900).
    _copy(fields, body, (("comment", "comment"),), null_overwrites=True)
    return fields


def _check_against_config(
    config: ScoreConfig, data_type: str, value: float, string_value: str | None, raw: float | str
) -> tuple[float, str | None]:
    if data_type == "NUMERIC":
        if config.min_value is not None and value < config.min_value:
            raise InvalidEvent(f"score {config.name!r} value {value} is below the config minimum {config.min_value}")
        if config.max_value is not None and value > config.max_value:
            raise InvalidEvent(f"score {config.name!r} value {value} is above the config maximum {config.max_value}")
    if data_type == "CATEGORICAL":
        for option in config.categories or ():
            if option.label == raw or (not isinstance(raw, str) and option.value == raw):
                return option.value, option.label
        raise InvalidEvent(f"score {config.name!r} value {raw!r} is not a category of config {config.id!r}")
    return value, string_value


def _score_value(body: ScoreBody) -> tuple[str, float, str | None]:
    data_type = body.dataType if given(body.dataType) else None
    value = body.value
    if data_type is None:
        data_type = "CATEGORICAL" if isinstance(value, str) else "NUMERIC"
    if data_type == "NUMERIC":
        if isinstance(value, str):
            raise InvalidEvent(f"{data_type} score {body.name!r} needs a numeric value, got a string")
        return data_type, float(value), None
    if data_type == "BOOLEAN":
        if value not in (0, 1) or isinstance(value, str):
            raise InvalidEvent(f"BOOLEAN score {body.name!r} needs value 0 or 1, got {value!r}")
        return data_type, float(value), "True" if value == 1 else "False"
    if data_type == "CATEGORICAL":
        if not isinstance(value, str) and not given(body.configId):
            raise InvalidEvent(f"CATEGORICAL score {body.name!r} needs a string value, got {value!r}")
        return data_type, 0.0, value if isinstance(value, str) else None
    if not isinstance(value, str):  # TEXT and CORRECTION
        raise InvalidEvent(f"{data_type} score {body.name!r} needs a string value, got {value!r}")
    return data_type, 0.0, value
