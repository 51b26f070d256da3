"""Compare what the pipeline stored with the reference merge of everything produced."""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from load.generate import INVALID_MESSAGES
from pipeline.recordfile import Record
from tests.reference import reference_rows

INVALID = set(INVALID_MESSAGES)
TABLES = {"trace": "traces", "observation": "observations", "score": "scores"}
COLUMNS = {
    "trace": ("name", "user_id", "session_id", "tags", "metadata", "input", "output", "environment", "timestamp"),
    "observation": (
        "type",
        "trace_id",
        "start_time",
        "end_time",
        "name",
        "provided_model_name",
        "usage_details",
        "total_cost",
        "metadata",
        "input",
        "output",
        "parent_observation_id",
        "environment",
        "tool_definitions",
        "tool_calls",
        "tool_call_names",
    ),
    "score": ("name", "value", "data_type", "string_value", "trace_id", "comment"),
}


def valid_events(records: list[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.value not in INVALID]


def _ms(value: str | None) -> int | None:
    return None if value is None else int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1000)


def _stored(column: str, value: Any) -> Any:
    if column in ("timestamp", "start_time", "end_time"):
        return _ms(value)
    if column == "total_cost":
        return None if value is None else Decimal(value).normalize()
    return value


# The pipeline stores base64 images as Langfuse media tokens (id: URL-safe base64 sha256, 22 characters).
DATA_URI = re.compile(r'"data:(image/png);base64,([A-Za-z0-9+/=]+)"')


def _as_token(match: re.Match[str]) -> str:
    digest = hashlib.sha256(base64.b64decode(match.group(2))).digest()
    media_id = base64.urlsafe_b64encode(digest).decode()[:22]
    return f'"@@@langfuseMedia:type={match.group(1)}|id={media_id}|source=base64_data_uri@@@"'


def _expected(column: str, row: dict[str, Any]) -> Any:
    value = row.get(column)
    if column in ("input", "output") and isinstance(value, str) and "data:" in value:
        return DATA_URI.sub(_as_token, value)
    if column == "name" and value is None:
        return ""
    if column == "total_cost":
        return None if value is None else Decimal(value).normalize()
    if column == "environment":
        return value or "default"
    if column in ("metadata", "usage_details", "tool_definitions"):
        return value or {}
    if column in ("tool_calls", "tool_call_names"):
        return value or []
    return value


def mismatches(tables: dict[str, Any], produced: list[Record]) -> list[str]:
    """Every difference between stored FINAL rows and the reference; empty means identical."""
    expected = reference_rows(valid_events(produced))
    problems = []
    for entity, table in TABLES.items():
        stored = {(row["project_id"], row["id"]): row for row in tables[table]}
        wanted = {(p, i): row for (e, p, i), row in expected.items() if e == entity}
        if len(stored) != len(tables[table]):
            problems.append(f"{table}: duplicate FINAL rows")
        for key in wanted.keys() - stored.keys():
            problems.append(f"{table}: missing {key}")
        for key in stored.keys() - wanted.keys():
            problems.append(f"{table}: unexpected {key}")
        for key in wanted.keys() & stored.keys():
            for column in COLUMNS[entity]:
                got, want = _stored(column, stored[key][column]), _expected(column, wanted[key])
                if got != want:
                    problems.append(f"{table} {key} {column}: stored {got!r}, reference {want!r}")
    return problems[:30]


def archive_problems(archived: list[Record], produced: list[Record]) -> list[str]:
    """The archive must hold every valid produced message (repeats after a crash are dropped by offset)."""
    by_offset = {(r.partition, r.offset): r.value for r in archived}
    got = Counter(by_offset.values())
    want = Counter(r.value for r in produced if r.value not in INVALID)
    problems = []
    if got != want:
        missing = want - got
        extra = got - want
        problems.append(f"archive differs: {sum(missing.values())} missing, {sum(extra.values())} unexpected")
    return problems
