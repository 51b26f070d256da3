"""Langfuse's merge rules as a per-field clocked state, so that any arrival order gives the same row.

Langfuse folds an entity's events sorted by (envelope timestamp, create before update). Keeping, for each
field, the sort key of the event that set it gives the same result as that fold whatever the order in
which events arrive, and re-applying an event changes nothing. That is what makes redelivery after a
crash, a rebalance or a late update safe:

- immutable fields keep the value of the earliest event that defines them;
- other fields keep the value of the latest event that defines them (``null`` counts, ``{}`` does not);
- input and output: the latest truthy value (field sets only carry truthy ones);
- metadata: per top-level key, the objects set since the last non-object value, deep-merged in clock order
  (exactly lodash ``merge`` folded in event order, including key order);
- tags: the union, sorted when the row is built.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from pipeline.transforms.fields import EventFields, SortKey
from pipeline.transforms.normalize import stringify

IMMUTABLE_FIELDS: dict[str, frozenset[str]] = {
    "trace": frozenset({"timestamp", "environment"}),
    "observation": frozenset({"trace_id", "start_time", "environment", "type"}),
    "score": frozenset({"timestamp", "trace_id", "environment"}),
}
# A clock older than any event: values read from a row that has no stored clocks.
STORED_CLOCK: SortKey = (-(2**62), 0, "")


class EntityState(msgspec.Struct, gc=False):
    """One entity's merged fields with the clock of the event that set each. Values and clocks are two maps, not
    one of pairs: a state is kept for every entity in memory, and every small container costs the garbage
    collector a look (the state is never part of a reference cycle, hence ``gc=False``)."""

    entity: str
    project_id: str
    entity_id: str
    created_at_ms: int
    values: dict[str, Any] = msgspec.field(default_factory=dict)
    clocks: dict[str, SortKey] = msgspec.field(default_factory=dict)
    # Per top-level key: (clock, value) entries since the latest non-object value, in clock order.
    metadata: dict[str, list[tuple[SortKey, Any]]] = msgspec.field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    # The sort-key columns of the row last written for this entity (see rows.sort_key_columns).
    written_sort_key: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.entity, self.project_id, self.entity_id)

    @property
    def trace_id(self) -> str | None:
        """The trace the entity belongs to (a trace belongs to itself)."""
        return self.entity_id if self.entity == "trace" else self.values.get("trace_id")

    def value(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def deep_merge(older: Any, newer: Any) -> Any:
    """lodash ``merge``: objects merge key by key and arrays index by index; any other value from ``newer``
    wins."""
    if isinstance(older, dict) and isinstance(newer, dict):
        merged = dict(older)
        for key, value in newer.items():
            merged[key] = deep_merge(merged[key], value) if key in merged else value
        return merged
    if isinstance(older, list) and isinstance(newer, list):
        return [deep_merge(older[i], value) if i < len(older) else value for i, value in enumerate(newer)] + older[
            len(newer) :
        ]
    return newer


def apply_fields(state: EntityState, change: EventFields) -> bool:
    """Fold one event into the state; returns whether anything changed."""
    clock = change.sort_key
    immutable = IMMUTABLE_FIELDS[state.entity]
    changed = False
    values, clocks = state.values, state.clocks
    for name, value in change.fields.items():
        if isinstance(value, dict) and not value:
            continue  # an empty object never overwrites (protects usage and cost maps)
        current = clocks.get(name)
        # A newer clock must be persisted even when the value is equal, or a reload would let an event that
        # sorts between the two win.
        if current is None or ((clock < current) if name in immutable else (clock > current)):
            values[name] = value
            clocks[name] = clock
            changed = True
    if change.metadata:
        changed |= _apply_metadata(state.metadata, change.metadata, clock)
    if change.tags and not state.tags.issuperset(change.tags):
        state.tags = state.tags | frozenset(change.tags)
        changed = True
    return changed


def _apply_metadata(metadata: dict[str, list[tuple[SortKey, Any]]], incoming: dict[str, Any], clock: SortKey) -> bool:
    changed = False
    for key, value in incoming.items():
        entries = metadata.setdefault(key, [])
        if any(entry_clock == clock for entry_clock, _ in entries):
            continue
        entries.append((clock, value))
        entries.sort(key=lambda entry: entry[0])
        # Values before the latest plain (non-container) value can no longer influence the merge.
        last_plain = max((i for i, (_, v) in enumerate(entries) if not isinstance(v, dict | list)), default=0)
        del entries[:last_plain]
        changed = True
    return changed


def metadata_value(entries: list[tuple[SortKey, Any]]) -> Any:
    """The merged value of one top-level metadata key."""
    value = entries[0][1]
    for _, newer in entries[1:]:
        value = deep_merge(value, newer)
    return value


def stored_metadata(state: EntityState) -> dict[str, str]:
    """The merged metadata as Langfuse stores it: every top-level value stringified."""
    return {key: stringify(metadata_value(entries)) for key, entries in state.metadata.items()}


def new_state(change: EventFields, now_ms: int) -> EntityState:
    return EntityState(change.entity, change.project_id, change.entity_id, now_ms)


def clocks_of(state: EntityState, stored_metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The clocks to persist beside the row (``metadata.<key>`` for metadata keys).

    A fourth element marks an object value, so a reload can deep-merge into it again. Where the row stores a
    metadata key differently from its merged value (tool definitions moved into the input), a fifth element
    keeps the merged value itself: a reload must start from what the events said, not from the row's form.
    """
    clocks: dict[str, Any] = dict(state.clocks)
    for key, entries in state.metadata.items():
        value = metadata_value(entries)
        is_object = isinstance(value, dict | list)
        clock = (*entries[-1][0], 1) if is_object else entries[-1][0]
        if stored_metadata is not None and stored_metadata.get(key) != stringify(value):
            clock = (*entries[-1][0], int(is_object), value)
        clocks[f"metadata.{key}"] = clock
    return clocks


def state_from_row(
    entity: str, row: dict[str, Any], clocks: dict[str, list[Any]], fields: frozenset[str]
) -> EntityState:
    """Rebuild a state from a stored row (values in field-set form) and its persisted clocks.

    ``fields`` are the row's columns that events set. Only columns with a stored clock were set by an event:
    the others hold what the row builder filled in (an observation without a trace id stores its own id), and
    must not compete with a late event that sets them.
    """
    state = EntityState(entity, row["project_id"], row["id"], row["created_at"])
    for name in fields:
        if name in row and name in clocks:
            state.values[name] = row[name]
            state.clocks[name] = _clock(clocks[name])
    merged_values = {
        name[9:]: clock for name, clock in clocks.items() if name.startswith("metadata.") and len(clock) > 4
    }
    for key, value in (row.get("metadata") or {}).items():
        clock = clocks.get(f"metadata.{key}")
        if key in merged_values:
            continue
        if clock is not None and len(clock) > 3 and clock[3]:
            value = orjson.loads(value)
        state.metadata[key] = [(_clock(clock), value)]
    for key, clock in merged_values.items():
        state.metadata[key] = [(_clock(clock), clock[4])]
    state.tags = frozenset(row.get("tags") or ())
    return state


def _clock(raw: list[Any] | None) -> SortKey:
    return STORED_CLOCK if raw is None else (int(raw[0]), int(raw[1]), str(raw[2]))
