"""Merged entity state to a ClickHouse row (Langfuse v3 columns), and a stored row back to state form.

Timestamps stay epoch milliseconds here; the ClickHouse sink converts them on insert.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from pipeline.transforms.enrich import Enriched
from pipeline.transforms.merge import EntityState, stored_metadata

TABLE_BY_ENTITY = {"trace": "traces", "observation": "observations", "score": "scores"}

# The columns that events set; the rest are derived when the row is built.
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "trace": frozenset(
        {"timestamp", "environment", "name", "user_id", "release", "version", "session_id", "public", "input", "output"}
    ),
    "observation": frozenset(
        {
            "type",
            "start_time",
            "environment",
            "trace_id",
            "name",
            "level",
            "provided_model_name",
            "status_message",
            "parent_observation_id",
            "version",
            "end_time",
            "completion_start_time",
            "model_parameters",
            "prompt_name",
            "prompt_version",
            "provided_usage_details",
            "provided_cost_details",
            "input",
            "output",
        }
    ),
    "score": frozenset(
        {
            "timestamp",
            "environment",
            "name",
            "value",
            "data_type",
            "string_value",
            "long_string_value",
            "source",
            "trace_id",
            "observation_id",
            "session_id",
            "dataset_run_id",
            "config_id",
            "queue_id",
            "execution_trace_id",
            "author_user_id",
            "comment",
            "ingestion_api_key",
            "ingestion_sdk_name",
            "ingestion_sdk_version",
        }
    ),
}
DATETIME_COLUMNS = frozenset(
    {"timestamp", "start_time", "end_time", "completion_start_time", "created_at", "updated_at", "event_ts"}
)


def _common(state: EntityState, now_ms: int) -> dict[str, Any]:
    return {
        "id": state.entity_id,
        "project_id": state.project_id,
        "environment": state.value("environment", "default"),
        "metadata": stored_metadata(state),
        "created_at": state.created_at_ms,
        "updated_at": now_ms,
        "event_ts": now_ms,
        "is_deleted": 0,
    }


def trace_row(state: EntityState, now_ms: int) -> dict[str, Any]:
    value = state.values.get
    return {
        **_common(state, now_ms),
        "timestamp": value("timestamp"),
        "name": value("name") or "",
        "user_id": value("user_id"),
        "release": value("release"),
        "version": value("version"),
        "public": bool(value("public", False)),
        "bookmarked": False,
        "tags": sorted(state.tags),
        "input": value("input"),
        "output": value("output"),
        "session_id": value("session_id"),
    }


def observation_row(state: EntityState, now_ms: int, enriched: Enriched) -> dict[str, Any]:
    value = state.values.get
    start = value("start_time")
    end = value("end_time")
    tools, enrichment = enriched.tools, enriched.usage
    return {
        **_common(state, now_ms),
        "metadata": tools.metadata,
        # No trace id anywhere: the observation's own id, as Langfuse's wrapper-trace rule intends (and a
        # random id, Langfuse's actual behaviour, would change on every re-merge).
        "trace_id": value("trace_id") or state.entity_id,
        "type": value("type"),
        "parent_observation_id": value("parent_observation_id"),
        "start_time": start,
        "end_time": max(end, start) if end is not None else None,
        "name": value("name") or "",
        "level": enriched.level,
        "status_message": value("status_message"),
        "version": value("version"),
        "input": tools.input,
        "output": value("output"),
        "provided_model_name": value("provided_model_name"),
        "internal_model_id": enrichment.internal_model_id,
        "model_parameters": value("model_parameters"),
        "provided_usage_details": enriched.provided_usage,
        "usage_details": enrichment.usage_details,
        "provided_cost_details": enriched.provided_cost,
        "cost_details": enrichment.cost_details,
        "total_cost": enrichment.total_cost,
        "completion_start_time": value("completion_start_time"),
        "prompt_id": None,
        "prompt_name": value("prompt_name"),
        "prompt_version": value("prompt_version"),
        "usage_pricing_tier_id": enrichment.pricing_tier_id,
        "usage_pricing_tier_name": enrichment.pricing_tier_name,
        "tool_definitions": tools.definitions,
        "tool_calls": tools.calls,
        "tool_call_names": tools.call_names,
    }


def score_row(state: EntityState, now_ms: int) -> dict[str, Any]:
    value = state.values.get
    return {
        **_common(state, now_ms),
        "timestamp": value("timestamp"),
        "trace_id": value("trace_id"),
        "session_id": value("session_id"),
        "dataset_run_id": value("dataset_run_id"),
        "observation_id": value("observation_id"),
        "name": value("name") or "",
        "value": value("value", 0.0),
        "source": value("source") or "API",
        "comment": value("comment"),
        "author_user_id": value("author_user_id"),
        "config_id": value("config_id"),
        "data_type": value("data_type") or "NUMERIC",
        "string_value": value("string_value"),
        "queue_id": value("queue_id"),
        "execution_trace_id": value("execution_trace_id"),
        "long_string_value": value("long_string_value") or "",
        "ingestion_api_key": value("ingestion_api_key") or "",
        "ingestion_sdk_name": value("ingestion_sdk_name") or "unknown",
        "ingestion_sdk_version": value("ingestion_sdk_version") or "unknown",
    }


# Columns whose UTC date (or value) is part of each table's ORDER BY, besides project_id and id.
SORT_KEY_COLUMNS = {"trace": ("timestamp",), "observation": ("type", "start_time"), "score": ("timestamp",)}
DAY_MS = 86_400_000


def _sort_identity(entity: str, columns: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        value // DAY_MS if name != "type" and value is not None else value
        for name in SORT_KEY_COLUMNS[entity]
        for value in [columns.get(name)]
    )


def rows_for(
    state: EntityState, now_ms: int, enriched: Enriched | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The entity's new row, preceded by a deletion of its previous row when a late event with an earlier
    timestamp moved it to another sort key (otherwise FINAL would show both); and the row's sort-key columns,
    which the caller keeps as the entity's written sort key."""
    row = build_row(state, now_ms, enriched)
    current = {name: row[name] for name in SORT_KEY_COLUMNS[state.entity]}
    previous = state.written_sort_key
    if previous is None or _sort_identity(state.entity, previous) == _sort_identity(state.entity, current):
        return [row], current
    return [{**row, **previous, "is_deleted": 1}, row], current


def build_row(state: EntityState, now_ms: int, enriched: Enriched | None = None) -> dict[str, Any]:
    if state.entity == "observation":
        assert enriched is not None, "an observation row needs its enrichment"
        return observation_row(state, now_ms, enriched)
    if state.entity == "trace":
        return trace_row(state, now_ms)
    return score_row(state, now_ms)


def stored_row_to_field_form(entity: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row read from ClickHouse (datetimes, Decimals, empty maps) in the form field sets use."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in DATETIME_COLUMNS and value is not None:
            # clickhouse-connect returns naive datetimes for columns without a time zone: they are UTC.
            stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
            out[name] = int(stamp.timestamp() * 1000)
        elif name == "provided_cost_details":
            out[name] = {key: float(cost) for key, cost in value.items()} or None
        elif name == "provided_usage_details":
            out[name] = {key: int(units) for key, units in value.items()} or None
        else:
            out[name] = value
    return out
