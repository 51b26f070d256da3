"""One batch of Kafka records through the pure stages: validate -> dedup -> merge -> rows.

Synchronous and free of I/O, in two phases so that the runtime can read stored state in between:
``prepare`` parses, validates, deduplicates and extracts media, and names the entities that are neither in
memory nor new to it; the runtime reads those from ClickHouse; ``complete`` merges and builds the rows.
``process`` runs both with a synchronous lookup (tests, tools).

A batch is *in flight* from ``prepare`` until ``mark_durable`` (its sinks succeeded) or ``discard`` (it
will never be written): its event ids count as seen for later batches, and its entities cannot be evicted,
so the next batch can be processed while this one is written.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET

from pipeline.recordfile import Record
from pipeline.state import BoundedSet, StateStore
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
from pipeline.transforms.validate import ENTITY_BY_TYPE, IngestionEvent, Rejected, message_key, parse_event

log = logging.getLogger(__name__)
MEDIA_FIELDS = ("input", "output", "metadata")
MEDIA_MARK = b"@@@langfuseMedia:"

EntityKey = tuple[str, str, str]  # (entity, project id, entity id)
EventKey = tuple[str, str]  # (project id, event id)
MediaKey = tuple[str, str]  # (project id, media id)
StoredState = tuple[dict[str, Any], dict[str, Any]]
LoadStored = Callable[[list[EntityKey]], dict[EntityKey, StoredState]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str
    event_type: str = "unknown"
    kind: str = "invalid_body"  # see ``Rejected.kind``; also failed_semantic_check, rejected_by_store, internal_error


@dataclass
class BatchOutput:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Parallel to ``rows``: the entity each row was built for, so a refused row can be traced to its events.
    row_owners: dict[str, list[EntityKey]] = field(default_factory=dict)
    clocks: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    archived: list[Record] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    new_event_ids: list[EventKey] = field(default_factory=list)
    media: dict[MediaKey, MediaObject] = field(default_factory=dict)
    media_owners: dict[MediaKey, set[EntityKey]] = field(default_factory=dict)
    deletions: list[TraceDeletion] = field(default_factory=list)
    media_kept_inline: int = 0
    # The messages merged into each entity by this batch, with their event ids.
    sources: dict[EntityKey, list[tuple[Record, EventKey, str]]] = field(default_factory=dict)
    # Every entity the batch named (pinned in memory while the batch is in flight).
    entities: set[EntityKey] = field(default_factory=set)
    now_ms: int = 0  # when the batch was processed: rows' updated_at and event_ts
    refused_ids: set[EventKey] = field(default_factory=set)  # events that became dead letters after merging

    def add_row(self, table: str, owner: EntityKey, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)
        self.row_owners.setdefault(table, []).append(owner)


@dataclass
class Prepared:
    """A batch after the first phase: what ``complete`` needs, and the entities to read from storage."""

    out: BatchOutput
    parsed: list[tuple[IngestionEvent, EventRecord]]
    with_media: list[tuple[IngestionEvent, Extraction]]
    missing: list[EntityKey]
    now_ms: int
    batch_ids: set[EventKey] = field(default_factory=set)


class Processor:
    def __init__(
        self,
        catalog: Catalog,
        max_event_bytes: int,
        state_limit: int,
        dedup_limit: int,
        media_limits: Limits | None = None,
        *,
        check_keys: bool = False,
    ) -> None:
        self.catalog = catalog
        # The worker checks the key rule (wrong keys spread an entity over workers); a rebuild replays the archive
        # as it was accepted.
        self.check_keys = check_keys
        self.media_limits = media_limits or Limits()
        self.max_event_bytes = max_event_bytes
        self.states = StateStore(state_limit)
        self.seen = BoundedSet(dedup_limit)
        self.in_flight: Counter[EventKey] = Counter()

    def process(self, records: list[Record], load_stored: LoadStored, now_ms: int) -> BatchOutput:
        prepared = self.prepare(records, now_ms)
        return self.complete(prepared, load_stored(prepared.missing) if prepared.missing else {})

    def prepare(self, records: list[Record], now_ms: int) -> Prepared:
        out = BatchOutput(now_ms=now_ms)
        out.counts["consumed"] = len(records)
        prepared = Prepared(out, [], [], [], now_ms)
        for record in records:
            try:
                self._prepare_one(record, prepared)
            except InvalidEvent as exc:
                out.dead_letters.append(DeadLetter(record, str(exc), _peek_type(record), "failed_semantic_check"))
            except Exception as exc:  # a bug must not stall the partition: park the message with the reason
                log.exception("unexpected error processing offset %s", record.offset)
                out.dead_letters.append(
                    DeadLetter(record, f"internal error: {exc!r}", _peek_type(record), "internal_error")
                )
        self.in_flight.update(out.new_event_ids)
        self.states.pin(out.entities)
        prepared.missing = sorted(key for key in out.entities if key not in self.states)
        return prepared

    def _prepare_one(self, record: Record, prepared: Prepared) -> None:
        out = prepared.out
        outcome = parse_event(record.value, self.max_event_bytes)
        if outcome is None:
            out.counts["sdk_log"] += 1
            out.archived.append(record)
            return
        if isinstance(outcome, Rejected):
            out.dead_letters.append(DeadLetter(record, outcome.reason, _peek_type(record), outcome.kind))
            return
        if self.check_keys and record.key != (
            expected := message_key(outcome.project_id, outcome.entity, outcome.entity_id)
        ):
            reason = f"message key {_shown(record.key)} breaks the key rule: this event needs {expected.decode()!r}"
            out.dead_letters.append(DeadLetter(record, reason, outcome.type, "wrong_key"))
            return
        event_key = (outcome.project_id, outcome.event_id)
        if event_key in self.seen or event_key in self.in_flight or event_key in prepared.batch_ids:
            if outcome.entity != "trace_deletion":
                out.archived.append(record)  # the archive keeps every valid message, repeats included
            out.counts["deduplicated"] += 1
            return
        if outcome.entity == "trace_deletion":
            # Applied after this batch's rows are durable; not archived, so nothing of it remains.
            out.deletions.append(TraceDeletion(outcome.project_id, outcome.entity_id))
            prepared.batch_ids.add(event_key)
            out.new_event_ids.append(event_key)
            out.counts["processed"] += 1
            return
        found = self._extract_media(record, outcome)
        event_record = to_record(outcome, self.catalog.score_config, record.headers)
        entity_key = (event_record.entity, event_record.project_id, event_record.entity_id)
        out.archived.append(record)
        prepared.batch_ids.add(event_key)
        out.new_event_ids.append(event_key)
        out.entities.add(entity_key)
        out.sources.setdefault(entity_key, []).append((record, event_key, outcome.type))
        prepared.parsed.append((outcome, event_record))
        if found is not None:
            prepared.with_media.append((outcome, found))

    def complete(self, prepared: Prepared, stored: dict[EntityKey, StoredState]) -> BatchOutput:
        out, now_ms = prepared.out, prepared.now_ms
        for key in prepared.missing:
            if key in stored:
                self.states.put(_stored_state(key, *stored[key]))
        touched, failed = self._merge(prepared, now_ms)
        for event, found in prepared.with_media:
            # After the merge: an update event may not name its trace, the merged observation does.
            state = self.states.get(_entity_key(event))
            if _entity_key(event) not in failed:
                _add_media(out, event, found, (state.trace_id if state else None) or event.entity_id, now_ms)
        models = self.catalog.model_table
        for key, state in touched.items():
            try:
                rows = rows_for(state, now_ms, models)
                clocks = clocks_of(state, rows[-1]["metadata"])
            except Exception as exc:
                log.exception("building the row of %s failed", key)
                failed[key] = f"internal error building the {key[0]} row: {exc!r}"
                continue
            for row in rows:
                out.add_row(TABLE_BY_ENTITY[key[0]], key, row)
            out.clocks.append((state.entity, state.project_id, state.entity_id, clocks))
        if failed:
            # One entity's failure never takes its batch down: its messages are dead letters, its state is dropped.
            self.states.remove(failed)
            refuse(out, failed, "internal_error")
        out.counts["dead_lettered"] = len(out.dead_letters)
        return out

    def _merge(self, prepared: Prepared, now_ms: int) -> tuple[dict[EntityKey, EntityState], dict[EntityKey, str]]:
        """Fold the batch's events into their entities' states: the touched entities, and those whose merge
        failed (with why)."""
        touched: dict[EntityKey, EntityState] = {}
        failed: dict[EntityKey, str] = {}
        for _, event_record in prepared.parsed:
            key = (event_record.entity, event_record.project_id, event_record.entity_id)
            prepared.out.counts["processed"] += 1
            if key in failed:
                continue
            state = self.states.get(key)
            if state is None:
                state = new_state(event_record, now_ms)
                self.states.put(state)
            try:
                if apply_record(state, event_record):
                    touched[key] = state
            except Exception as exc:
                log.exception("merging into %s failed", key)
                failed[key] = f"internal error merging into the {key[0]}: {exc!r}"
                touched.pop(key, None)
        return touched, failed

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

    def mark_durable(self, out: BatchOutput, refused: Collection[EntityKey] = ()) -> None:
        """The batch's sinks succeeded: only now may its events count as seen (marking earlier is Langfuse's bug
        #16017). Entities a store refused leave memory (their state holds events that were not written), and
        so do deleted traces (later events start from what ClickHouse holds)."""
        self._release(out)
        self.seen.add_all(event_key for event_key in out.new_event_ids if event_key not in out.refused_ids)
        self.states.remove(refused)
        for deletion in out.deletions:
            self.forget_trace(deletion)
        self.states.trim()

    def discard(self, out: BatchOutput) -> None:
        """The batch will not be written (a rebalance, or the batch before it changed what it merged into):
        forget what it merged, so its events are processed afresh when they come again."""
        self._release(out)
        self.states.remove(out.entities)

    def _release(self, out: BatchOutput) -> None:
        self.in_flight.subtract(out.new_event_ids)
        self.in_flight = +self.in_flight  # drop counts that reached zero
        self.states.unpin(out.entities)

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
        self.in_flight.clear()


def refuse(out: BatchOutput, refused: dict[EntityKey, str], kind: str = "rejected_by_store") -> list[DeadLetter]:
    """Take the refused entities out of the batch (rows, clocks, media links and objects, archived messages)
    and return dead letters for the messages that were merged into them. Their events never count as seen, so
    a replay of the letters after a fix is processed."""
    for table in list(out.rows):
        kept = [(row, owner) for row, owner in zip(out.rows[table], out.row_owners[table], strict=True)]
        kept = [(row, owner) for row, owner in kept if owner not in refused]
        out.rows[table] = [row for row, _ in kept]
        out.row_owners[table] = [owner for _, owner in kept]
    out.clocks = [clock for clock in out.clocks if (clock[0], clock[1], clock[2]) not in refused]
    for media_key, owners in list(out.media_owners.items()):
        if owners <= refused.keys():
            out.media.pop(media_key, None)
            del out.media_owners[media_key]
    letters = [
        DeadLetter(record, reason, event_type, kind)
        for key, reason in refused.items()
        for record, _, event_type in out.sources.get(key, ())
    ]
    out.refused_ids.update(event_key for key in refused for _, event_key, _ in out.sources.get(key, ()))
    dropped = {id(letter.record) for letter in letters}
    out.archived = [record for record in out.archived if id(record) not in dropped]
    out.dead_letters.extend(letters)
    out.counts["dead_lettered"] = len(out.dead_letters)
    out.counts["processed"] -= len(letters)
    return letters


def _entity_key(event: IngestionEvent) -> EntityKey:
    return (event.entity, event.project_id, event.entity_id)


def _stored_state(key: EntityKey, row: dict[str, Any], clocks: dict[str, Any]) -> EntityState:
    stored_form = stored_row_to_record_form(key[0], row)
    state = state_from_row(key[0], stored_form, clocks, RECORD_FIELDS[key[0]])
    state.written_sort_key = {name: stored_form[name] for name in SORT_KEY_COLUMNS[key[0]]}
    return state


def _shown(key: bytes | None) -> str:
    if key is None:
        return "(none)"
    text = key[:200].decode(errors="replace")
    return repr(text + ("..." if len(key) > 200 else ""))


def _add_media(out: BatchOutput, event: IngestionEvent, found: Extraction, trace_id: str, now_ms: int) -> None:
    """Objects to store (once per project and id) and one link row per reference."""
    owner = (event.entity, event.project_id, event.entity_id)
    observation_id = event.entity_id if event.entity == "observation" else ""
    objects = {media.media_id: media for media in found.objects}
    for media in objects.values():
        out.media.setdefault((event.project_id, media.media_id), media)
        out.media_owners.setdefault((event.project_id, media.media_id), set()).add(owner)
    out.media_kept_inline += found.kept_inline
    for reference in found.references:
        stored = objects.get(reference.media_id)
        row = {
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
        out.add_row("media", owner, row)


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
