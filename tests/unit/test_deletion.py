"""Trace deletion, the pure part: which messages belong to a trace, and what the processor does with a
trace-delete event."""

from __future__ import annotations

import orjson

from pipeline.recordfile import Record
from pipeline.runtime.processor import Processor
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.deletion import TraceDeletion, belongs_to_trace

DELETION = TraceDeletion("p1", "t1")


def _event(event_type: str, body: dict, project: str = "p1", n: int = 0) -> bytes:
    return orjson.dumps(
        {
            "id": f"ev-{event_type}-{n}",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": event_type,
            "project_id": project,
            "body": body,
        }
    )


def test_the_trace_its_observations_and_scores_belong_to_it():
    assert belongs_to_trace(_event("trace-create", {"id": "t1"}), DELETION)
    assert belongs_to_trace(_event("span-create", {"id": "o1", "traceId": "t1"}), DELETION)
    assert belongs_to_trace(_event("score-create", {"id": "s1", "traceId": "t1", "name": "x", "value": 1}), DELETION)
    # An observation without a trace id is its own trace.
    assert belongs_to_trace(_event("span-create", {"id": "t1"}), DELETION)


def test_updates_that_do_not_name_the_trace_belong_by_their_entity_id():
    update = _event("generation-update", {"id": "gen-7", "output": "done"})
    assert not belongs_to_trace(update, DELETION)
    assert belongs_to_trace(update, DELETION, frozenset({"gen-7", "score-1"}))
    assert not belongs_to_trace(_event("generation-update", {"id": "gen-8"}), DELETION, frozenset({"gen-7"}))


def test_other_traces_projects_and_garbage_do_not():
    assert not belongs_to_trace(_event("trace-create", {"id": "t2", "name": "t1"}), DELETION)
    assert not belongs_to_trace(_event("trace-create", {"id": "t1"}, project="p2"), DELETION)
    assert not belongs_to_trace(_event("span-create", {"id": "o1", "traceId": "t10"}), DELETION)
    assert not belongs_to_trace(b"{t1 not json", DELETION)
    assert not belongs_to_trace(b'["t1"]', DELETION)


def test_the_processor_hands_deletions_over_and_forgets_the_trace():
    processor = Processor(Catalog.with_defaults(), 1_000_000, 1000, 1000)
    records = [
        Record(_event("trace-create", {"id": "t1"}), offset=0),
        Record(_event("span-create", {"id": "o1", "traceId": "t1"}), offset=1),
        Record(_event("span-create", {"id": "o2", "traceId": "t2"}, n=1), offset=2),
        Record(_event("trace-delete", {"id": "t1"}), offset=3),
    ]
    out = processor.process(records, lambda keys: {}, 1_800_000_000_000)
    processor.mark_durable(out)
    assert out.deletions == [DELETION]
    assert [r.offset for r in out.archived] == [0, 1, 2], "the delete event itself is not archived"
    assert out.counts["processed"] == 4
    processor.forget_trace(DELETION)
    assert ("trace", "p1", "t1") not in processor.states
    assert ("observation", "p1", "o1") not in processor.states
    assert ("observation", "p1", "o2") in processor.states


def test_an_id_hidden_by_json_escapes_still_belongs():
    escaped = _event("trace-create", {"id": "t?"}).replace(b'"t?"', b'"t\\u0031"')  # "t1", escaped
    assert b"t1" not in escaped
    assert belongs_to_trace(escaped, DELETION)
