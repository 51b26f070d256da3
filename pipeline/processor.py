"""One batch of Kafka records through the pure stages: validate -> dedup -> merge -> rows.

Synchronous and free of I/O: stored rows for entities that are not in memory are fetched through the
``load_stored`` callback, and the caller makes the output durable before calling ``mark_durable``.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET

from pipeline.recordfile import Record
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.deletion import TraceDeletion
from pipeline.transforms.media import Extraction, Limits, MediaObject, extract
from pipeline.transforms.merge import EntityState, apply_record, clocks_of, new_state, state_from_row
from pipeline.transforms.records import EventRecord, InvalidEvent, to_record
from pipeline.transforms.rows import (
    RECORD_FIELDS,
    SORT_KEY_COLUMNS,
    TABLE_BY_ENTITY,
    rows_for,
    stored_row_to_record_form,
)
from pipeline.transforms.validate import ENTITY_BY_TYPE, IngestionEvent, Rejected, parse_event

log = logging.getLogger(__name__)
MEDIA_FIELDS = ("input", "output", "metadata")
MEDIA_MARK = b"@@@langfuseMedia:"

EntityKey = tuple[str, str, str]
StoredState = tuple[dict[str, Any], dict[str, Any]]
LoadStored = Callable[[list[EntityKey]], dict[EntityKey, StoredState]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str
    event_type: str = "unknown"
    kind: str = "invalid_body"  # see ``Rejected.kind``; also failed_semantic_check, internal_error


@dataclass
class BatchOutput:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    clocks: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    archived: list[Record] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    new_event_ids: list[tuple[str, str]] = field(default_factory=list)
    media: dict[tuple[str, str], MediaObject] = field(default_factory=dict)  # by (project, media id)
    deletions: list[TraceDeletion] = field(default_factory=list)
    media_kept_inline: int = 0


class BoundedSet:
    """Insertion-ordered set that forgets its oldest members beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Any, None] = OrderedDict()

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add_all(self, items: Iterable[Any]) -> None:
        for item in items:
            self._items[item] = None
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class StateStore:
    """Merged entity states, least recently used evicted beyond ``limit`` (they can be re-read)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._states: OrderedDict[EntityKey, EntityState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: EntityKey) -> bool:
        return key in self._states

    def get(self, key: EntityKey) -> EntityState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, state: EntityState) -> None:
        self._states[state.key] = state
        self._states.move_to_end(state.key)

    def discard(self, condition: Callable[[EntityState], bool]) -> None:
        for key in [key for key, state in self._states.items() if condition(state)]:
            del self._states[key]

    def trim(self) -> None:
        while len(self._states) > self.limit:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()


class Processor:
    def __init__(
        self,
        catalog: Catalog,
        max_event_bytes: int,
        state_limit: int,
        dedup_limit: int,
        media_limits: Limits | None = None,
    ) -> None:
        self.catalog = catalog
        self.media_limits = media_limits or Limits()
        self.max_event_bytes = max_event_bytes
        self.states = StateStore(state_limit)
        self.seen = BoundedSet(dedup_limit)

    def forget_trace(self, deletion: TraceDeletion) -> None:
        """Drop a deleted trace's entities from memory, so later events start from ClickHouse (where the
        deletion is stored) rather than from the state before it."""
        self.states.discard(
            lambda state: state.project_id == deletion.project_id and state.trace_id == deletion.trace_id
        )

    def forget(self) -> None:
        """Drop in-memory state, for example when partitions move to another worker."""
        self.states.clear()
        self.seen.clear()

    def process(self, records: list[Record], load_stored: LoadStored, now_ms: int) -> BatchOutput:
        out = BatchOutput()
        out.counts["consumed"] = len(records)
        parsed: list[tuple[IngestionEvent, EventRecord]] = []
        batch_ids: set[tuple[str, str]] = set()
        with_media: list[tuple[IngestionEvent, Extraction]] = []
        for record in records:
            try:
                outcome = parse_event(record.value, self.max_event_bytes)
                if outcome is None:
                    out.counts["sdk_log"] += 1
                    out.archived.append(record)
                    continue
                if isinstance(outcome, Rejected):
                    out.dead_letters.append(DeadLetter(record, outcome.reason, _peek_type(record), outcome.kind))
                    continue
                event_key = (outcome.project_id, outcome.event_id)
                if event_key in self.seen or event_key in batch_ids:
                    if outcome.entity != "trace_deletion":
                        out.archived.append(record)  # the archive keeps every valid message, repeats included
                    out.counts["deduplicated"] += 1
                    continue
                if outcome.entity == "trace_deletion":
                    # Applied after this batch's rows are durable; not archived, so nothing of it remains.
                    out.deletions.append(TraceDeletion(outcome.project_id, outcome.entity_id))
                    batch_ids.add(event_key)
                    out.new_event_ids.append(event_key)
                    out.counts["processed"] += 1
                    continue
                found = self._extract_media(record, outcome)
                event_record = to_record(outcome, self.catalog.score_config, record.headers)
                out.archived.append(record)
                batch_ids.add(event_key)
                parsed.append((outcome, event_record))
                if found is not None:
                    with_media.append((outcome, found))
            except InvalidEvent as exc:
                out.dead_letters.append(DeadLetter(record, str(exc), _peek_type(record), "failed_semantic_check"))
            except Exception as exc:  # a bug must not stall the partition: park the message with the reason
                log.exception("unexpected error processing offset %s", record.offset)
                out.dead_letters.append(
                    DeadLetter(record, f"internal error: {exc!r}", _peek_type(record), "internal_error")
                )

        keys = {(r.entity, r.project_id, r.entity_id) for _, r in parsed}
        missing = sorted(key for key in keys if key not in self.states)
        stored = load_stored(missing) if missing else {}
        touched: dict[EntityKey, EntityState] = {}
        for key in missing:
            if key in stored:
                row, clocks = stored[key]
                stored_form = stored_row_to_record_form(key[0], row)
                state = state_from_row(key[0], stored_form, clocks, RECORD_FIELDS[key[0]])
                state.written_sort_key = {name: stored_form[name] for name in SORT_KEY_COLUMNS[key[0]]}
                self.states.put(state)
        for event, event_record in parsed:
            key = (event_record.entity, event_record.project_id, event_record.entity_id)
            state = self.states.get(key)
            if state is None:
                state = new_state(event_record, now_ms)
                self.states.put(state)
            if apply_record(state, event_record):
                touched[key] = state
            out.new_event_ids.append((event.project_id, event.event_id))
            out.counts["processed"] += 1

        for event, found in with_media:
            # After the merge: an update event may not name its trace, the merged observation does.
            state = self.states.get((event.entity, event.project_id, event.entity_id))
            _add_media(out, event, found, (state.trace_id if state else None) or event.entity_id, now_ms)

        models = self.catalog.model_table
        for key, state in touched.items():
            out.rows.setdefault(TABLE_BY_ENTITY[key[0]], []).extend(rows_for(state, now_ms, models))
            out.clocks.append((state.entity, state.project_id, state.entity_id, clocks_of(state)))
        out.counts["dead_lettered"] = len(out.dead_letters)
        return out

    def _extract_media(self, record: Record, event: IngestionEvent) -> Extraction | None:
        # A cheap test on the raw bytes first: most events carry neither base64 nor media tokens.
        if b";base64," not in record.value and b'"data"' not in record.value and MEDIA_MARK not in record.value:
            return None
        found = Extraction()
        for field_name in MEDIA_FIELDS:
            value = getattr(event.body, field_name, UNSET)
            if value is not UNSET and value is not None:
                setattr(event.body, field_name, extract(value, field_name, self.media_limits, found))
        return found if found.references or found.kept_inline else None

    def mark_durable(self, out: BatchOutput) -> None:
        """Only now may these events count as seen (marking earlier is Langfuse's bug #16017)."""
        self.seen.add_all(out.new_event_ids)
        self.states.trim()


def _add_media(out: BatchOutput, event: IngestionEvent, found: Extraction, trace_id: str, now_ms: int) -> None:
    """Objects to store (once per project and id) and one link row per reference."""
    observation_id = event.entity_id if event.entity == "observation" else ""
    objects = {media.media_id: media for media in found.objects}
    for media in objects.values():
        out.media.setdefault((event.project_id, media.media_id), media)
    out.media_kept_inline += found.kept_inline
    for reference in found.references:
        stored = objects.get(reference.media_id)
        out.rows.setdefault("media", []).append(
            {
                "project_id": event.project_id,
                "media_id": reference.media_id,
                "trace_id": trace_id,
                "observation_id": observation_id,
                "field": reference.field,
                "content_type": reference.content_type,
                "sha_256_hash": stored.sha256 if stored else "",
                "content_length": len(stored.content) if stored else 0,
                "bucket_path": media_key(event.project_id, stored) if stored else "",
                "event_ts": now_ms,
            }
        )


def media_key(project_id: str, media: MediaObject) -> str:
    """Where a media object lives in object storage (Langfuse's layout: <project>/<id>.<ext>)."""
    return f"media/{project_id}/{media.key}"


def _peek_type(record: Record) -> str:
    # For metrics only: the type of a message that failed validation, if it can be seen cheaply.
    marker = record.value.find(b'"type"')
    if marker < 0:
        return "unknown"
    start = record.value.find(b'"', record.value.find(b":", marker) + 1)
    end = record.value.find(b'"', start + 1)
    if start < 0 or end < 0 or end - start > 40:
        return "unknown"
    name = record.value[start + 1 : end].decode(errors="replace")
    return name if name in ENTITY_BY_TYPE else "unknown"  # a metric label: never arbitrary input
