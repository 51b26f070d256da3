"""Trace deletion, the pure part: which archived messages belong to a deleted trace.

A ``trace-delete`` event removes the trace, its observations and scores, their archived payloads and the
media nothing else references (``pipeline/sinks/deletion.py`` does the I/O).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class TraceDeletion:
    project_id: str
    trace_id: str


def belongs_to_trace(value: bytes, deletion: TraceDeletion, member_ids: frozenset[str] = frozenset()) -> bool:
    """True for an archived message that carries the deleted trace's data: the trace itself, or an
    observation or score of it. ``member_ids`` are the ids of its observations and scores: their update
    events need not repeat the trace id (an observation without a trace id is its own trace)."""
    mentioned = deletion.trace_id.encode() in value or any(member.encode() in value for member in member_ids)
    if not mentioned and b"\\" not in value:  # cheap: most are about other traces (escapes could hide an id)
        return False
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(event, dict) or event.get("project_id") != deletion.project_id:
        return False
    body = event.get("body")
    if not isinstance(body, dict):
        return False
    if event.get("type") in ("trace-create", "trace-delete"):
        return body.get("id") == deletion.trace_id
    return (body.get("traceId") or body.get("id")) == deletion.trace_id or body.get("id") in member_ids
