"""One batch of Kafka records through the pure stages, each timed (``Processor.timings``, seconds per stage):

1. parse and validate (``transforms/validate.py``): bytes to a typed event, or a rejection reason;
2. dedup: the key rule, and events seen before or earlier in the batch;
3. media check (``transforms/media.py``): base64 payloads to objects and media tokens;
4. field mapping (``transforms/fields.py``): the fields the event sets, in column names;
5. merge (``transforms/merge.py``): into the entity's state, order-independent;
6. enrichment (``transforms/enrich.py``): tools, usage, model, pricing and cost of merged observations;
7. rows (``transforms/rows.py``): merged state to rows and the clocks stored beside them.

Synchronous and free of I/O, in two phases so that the runtime can read stored state in between: ``prepare``
runs stages 1-4 and names the entities neither in memory nor new to it; the runtime reads those from
ClickHouse; ``complete`` runs stages 5-7. ``process`` runs both with a synchronous lookup (tests, tools).

A batch is *in flight* from ``prepare`` until ``mark_durable`` (its sinks succeeded) or ``discard`` (it
will never be written): its event ids count as seen for later batches, and its entities cannot be evicted,
so the next batch can be processed while this one is written.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.outcomes import Outcome, ReasonKind
from pipeline.recordfile import Record
from pipeline.runtime.batch import (
    BatchOutput,
    DeadLetter,
    EntityKey,
    StoredState,
    add_media,
    add_media_upload,
    refuse,
)
from pipeline.runtime.state import StateStore
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.dedup import BoundedSet, EventKey, event_key, key_rule_problem, seen_before
from pipeline.transforms.deletion import TraceDeletion
from pipeline.transforms.enrich import Enriched, enrich_state
from pipeline.transforms.events import ENTITY_BY_TYPE
from pipeline.transforms.fields import EventFields, InvalidEvent, fields_of
from pipeline.transforms.media import Extraction, Limits, extract_from_body, may_hold_media
from pipeline.transforms.merge import EntityState, apply_fields, clocks_of, new_state, state_from_row
from pipeline.transforms.rows import (
    EVENT_FIELDS,
    SORT_KEY_COLUMNS,
    TABLE_BY_ENTITY,
    rows_for,
    stored_row_to_field_form,
)
from pipeline.transforms.validate import IngestionEvent, Rejected, parse_event

log = logging.getLogger(__name__)
PARSE, DEDUP, MEDIA, MAPPING, MERGE, ENRICHMENT, ROWS = (
    "parse and validate",
    "dedup",
    "media check",
    "field mapping",
    "merge",
    "enrichment",
    "rows",
)
STAGES = (PARSE, DEDUP, MEDIA, MAPPING, MERGE, ENRICHMENT, ROWS)
TAKEN_ASIDE = frozenset({"trace_deletion", "media_upload"})  # events that change no merged entity
LoadStored = Callable[[list[EntityKey]], dict[EntityKey, StoredState]]


@dataclass
class Prepared:
    """A batch after the first phase: what ``complete`` needs, and the entities to read from storage."""

    out: BatchOutput
    parsed: list[tuple[IngestionEvent, EventFields]]
    with_media: list[tuple[IngestionEvent, Extraction]]
    missing: list[EntityKey]
    now_ms: int
    batch_ids: set[EventKey] = field(default_factory=set)
    entity_order: list[EntityKey] = field(default_factory=list)  # out.entities in the order they first came


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
        self.media_limits = media_limits or Limits()
        self.max_event_bytes = max_event_bytes
        # The worker checks the key rule (wrong keys spread an entity over workers); a rebuild replays the archive
        # as it was accepted.
        self.check_keys = check_keys
        self.states = StateStore(state_limit)
        self.seen = BoundedSet(dedup_limit)
        self.in_flight: set[EventKey] = set()  # an id is in at most one batch in flight: later ones dedup it
        self.timings: Counter[str] = Counter()

    def process(self, records: list[Record], load_stored: LoadStored, now_ms: int) -> BatchOutput:
        prepared = self.prepare(records, now_ms)
        return self.complete(prepared, load_stored(prepared.missing) if prepared.missing else {})

    def prepare(self, records: list[Record], now_ms: int) -> Prepared:
        prepared = self.begin(now_ms)
        self.prepare_more(prepared, records)
        return self.finish(prepared)

    def begin(self, now_ms: int) -> Prepared:
        """An empty batch, for ``prepare_more`` to fill as its messages arrive (the runtime prepares a batch while
        it is still being fetched) and ``finish`` to close."""
        return Prepared(BatchOutput(now_ms=now_ms), [], [], [], now_ms)

    def prepare_more(self, prepared: Prepared, records: list[Record]) -> list[EntityKey]:
        """Stages 1-4 for more of the batch's messages, in order; returns the entities they bring that memory
        does not hold (so the runtime can start reading them). Touches only ``prepared``, so a batch dropped
        before ``finish`` leaves nothing behind."""
        out = prepared.out
        known = len(out.entities)
        out.counts[Outcome.CONSUMED] += len(records)
        spent = dict.fromkeys((PARSE, DEDUP, MEDIA, MAPPING), 0.0)
        for record in records:
            try:
                self._prepare_one(record, prepared, spent)
            except InvalidEvent as exc:
                out.dead_letters.append(
                    DeadLetter(record, str(exc), _peek_type(record), ReasonKind.FAILED_SEMANTIC_CHECK)
                )
            except Exception as exc:  # a bug must not stall the partition: park the message with the reason
                log.exception("unexpected error processing offset %s", record.offset)
                out.dead_letters.append(
                    DeadLetter(record, f"internal error: {exc!r}", _peek_type(record), ReasonKind.INTERNAL_ERROR)
                )
        self.timings.update(spent)
        if len(out.entities) == known:
            return []
        fresh = prepared.entity_order[known:]
        return [key for key in fresh if key not in self.states]

    def finish(self, prepared: Prepared) -> Prepared:
        """The batch is in flight from here: its ids count as seen, its entities stay in memory; ``missing`` names
        the entities to read from storage."""
        out = prepared.out
        self.in_flight.update(out.new_event_ids)
        self.states.pin(out.entities)
        prepared.missing = sorted(key for key in out.entities if key not in self.states)
        return prepared

    def _prepare_one(self, record: Record, prepared: Prepared, spent: dict[str, float]) -> None:
        out, clock = prepared.out, time.perf_counter
        started = clock()
        outcome = parse_event(record.value, self.max_event_bytes)
        parsed = clock()
        spent[PARSE] += parsed - started
        if outcome is None:
            out.counts[Outcome.SDK_LOG] += 1
            out.archived.append(record)
            return
        if isinstance(outcome, Rejected):
            out.dead_letters.append(DeadLetter(record, outcome.reason, _peek_type(record), outcome.kind))
            return
        admitted = self._admit(record, outcome, prepared)
        checked = clock()
        spent[DEDUP] += checked - parsed
        if not admitted:
            return
        found = None
        if may_hold_media(record.value):
            body, found = extract_from_body(outcome.body, self.media_limits)
            if found is not None:
                outcome = msgspec.structs.replace(outcome, body=body)
        extracted = clock()
        spent[MEDIA] += extracted - checked
        event_fields = fields_of(outcome, self.catalog.score_config, record.headers)
        spent[MAPPING] += clock() - extracted
        entity_key = (event_fields.entity, event_fields.project_id, event_fields.entity_id)
        key_of_event = event_key(outcome.project_id, outcome.event_id)
        out.archived.append(record)
        prepared.batch_ids.add(key_of_event)
        out.new_event_ids.append(key_of_event)
        if entity_key not in out.entities:
            out.entities.add(entity_key)
            prepared.entity_order.append(entity_key)
        out.sources.setdefault(entity_key, []).append((record, key_of_event, outcome.type))
        prepared.parsed.append((outcome, event_fields))
        if found is not None:
            prepared.with_media.append((outcome, found))

    def _admit(self, record: Record, event: IngestionEvent, prepared: Prepared) -> bool:
        """The dedup stage: whether the event goes on to be merged (trace deletions and media uploads are taken
        aside here)."""
        out = prepared.out
        if self.check_keys and (problem := key_rule_problem(record.key, event)):
            out.dead_letters.append(DeadLetter(record, problem, event.type, ReasonKind.WRONG_KEY))
            return False
        key = event_key(event.project_id, event.event_id)
        if seen_before(key, self.seen, self.in_flight, prepared.batch_ids):
            if event.entity != "trace_deletion":
                out.archived.append(record)  # the archive keeps every valid message, repeats included
            out.counts[Outcome.DEDUPLICATED] += 1
            return False
        if event.entity in TAKEN_ASIDE:
            if event.entity == "trace_deletion":
                # Applied after this batch's rows are durable; not archived, so nothing of it remains.
                out.deletions.append(TraceDeletion(event.project_id, event.entity_id))
            else:  # a file uploaded through the gateway: its link row, no merge
                owner = ("media", event.project_id, event.entity_id)
                add_media_upload(out, owner, event.body, out.now_ms)  # type: ignore[arg-type]
                out.sources.setdefault(owner, []).append((record, key, event.type))
                out.archived.append(record)
            prepared.batch_ids.add(key)
            out.new_event_ids.append(key)
            out.counts[Outcome.PROCESSED] += 1
            return False
        return True

    def complete(self, prepared: Prepared, stored: dict[EntityKey, StoredState]) -> BatchOutput:
        out, now_ms = prepared.out, prepared.now_ms
        started = time.perf_counter()
        for key in prepared.missing:
            if key in stored:
                self.states.put(_stored_state(key, *stored[key]))
        touched, failed = self._merge(prepared, now_ms)
        merged = time.perf_counter()
        enriched = self._enrich(touched, failed)
        out.tokenizer_seconds = sum(result.usage.tokenizer_seconds for result in enriched.values())
        enriching_done = time.perf_counter()
        for event, found in prepared.with_media:
            # After the merge: an update event may not name its trace, the merged observation does.
            key = (event.entity, event.project_id, event.entity_id)
            state = self.states.get(key)
            if key not in failed:
                add_media(out, key, found, (state.trace_id if state else None) or event.entity_id, now_ms)
        self._rows(out, touched, enriched, failed)
        if failed:
            # One entity's failure never takes its batch down: its messages are dead letters, its state is dropped.
            self.states.remove(failed)
            refuse(out, failed, ReasonKind.INTERNAL_ERROR)
        out.counts[Outcome.DEAD_LETTERED] = len(out.dead_letters)
        self.timings.update(
            {MERGE: merged - started, ENRICHMENT: enriching_done - merged, ROWS: time.perf_counter() - enriching_done}
        )
        return out

    def _merge(self, prepared: Prepared, now_ms: int) -> tuple[dict[EntityKey, EntityState], dict[EntityKey, str]]:
        """Fold the batch's events into their entities' states: the touched entities, and those whose merge
        failed (with why)."""
        touched: dict[EntityKey, EntityState] = {}
        failed: dict[EntityKey, str] = {}
        for _, event_fields in prepared.parsed:
            key = (event_fields.entity, event_fields.project_id, event_fields.entity_id)
            prepared.out.counts[Outcome.PROCESSED] += 1
            if key in failed:
                continue
            state = self.states.get(key)
            if state is None:
                state = new_state(event_fields, now_ms)
                self.states.put(state)
            try:
                if apply_fields(state, event_fields):
                    touched[key] = state
            except Exception as exc:
                log.exception("merging into %s failed", key)
                failed[key] = f"internal error merging into the {key[0]}: {exc!r}"
                touched.pop(key, None)
        return touched, failed

    def _enrich(self, touched: dict[EntityKey, EntityState], failed: dict[EntityKey, str]) -> dict[EntityKey, Enriched]:
        models = self.catalog.model_table
        enriched = {}
        for key, state in touched.items():
            if key[0] != "observation":
                continue
            try:
                enriched[key] = enrich_state(state, models)
            except Exception as exc:
                log.exception("enriching %s failed", key)
                failed[key] = f"internal error enriching the observation: {exc!r}"
        return enriched

    def _rows(
        self,
        out: BatchOutput,
        touched: dict[EntityKey, EntityState],
        enriched: dict[EntityKey, Enriched],
        failed: dict[EntityKey, str],
    ) -> None:
        for key, state in touched.items():
            if key in failed:
                continue
            try:
                rows, sort_key = rows_for(state, out.now_ms, enriched.get(key))
                clocks = clocks_of(state, rows[-1]["metadata"])
            except Exception as exc:
                log.exception("building the row of %s failed", key)
                failed[key] = f"internal error building the {key[0]} row: {exc!r}"
                continue
            state.written_sort_key = sort_key
            for row in rows:
                out.add_row(TABLE_BY_ENTITY[key[0]], key, row)
            out.clocks.append((state.entity, state.project_id, state.entity_id, clocks))

    def mark_durable(self, out: BatchOutput, refused: Collection[EntityKey] = ()) -> None:
        """The batch's sinks succeeded: only now may its events count as seen (marking earlier is Langfuse's bug
        #16017). Entities a store refused leave memory (their state holds events that were not written), and
        so do deleted traces (later events start from what ClickHouse holds)."""
        self._release(out)
        self.seen.add_all(key for key in out.new_event_ids if key not in out.refused_ids)
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
        self.in_flight.difference_update(out.new_event_ids)
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


def _stored_state(key: EntityKey, row: dict[str, Any], clocks: dict[str, Any]) -> EntityState:
    stored_form = stored_row_to_field_form(key[0], row)
    state = state_from_row(key[0], stored_form, clocks, EVENT_FIELDS[key[0]])
    state.written_sort_key = {name: stored_form[name] for name in SORT_KEY_COLUMNS[key[0]]}
    return state


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
