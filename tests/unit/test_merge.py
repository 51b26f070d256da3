"""Merge rules (study section 1.7 and conformance items 10-19), through the real batch processor."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.recordfile import Record
from pipeline.runtime.processor import Processor
from pipeline.transforms.dedup import event_key
from tests.reference import reference_rows
from tests.unit.helpers import CATALOG, envelope, merged, through_storage


def trace(events: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return next(row for key, row in merged(events, **kwargs).items() if key[0] == "trace")


def observation(events: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return next(row for key, row in merged(events, **kwargs).items() if key[0] == "observation")


T0, T1, T2 = "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:01.000Z", "2024-01-01T00:00:02.000Z"


def test_newest_event_wins_even_when_it_arrives_first():
    old = envelope("trace-create", {"id": "t", "userId": "old"}, ts=T0, event_id="a")
    new = envelope("trace-create", {"id": "t", "userId": "new"}, ts=T1, event_id="b")
    assert trace([new, old])["user_id"] == "new"


def test_create_sorts_before_update_on_equal_timestamps():
    create = envelope("span-create", {"id": "s", "name": "from-create"}, ts=T0, event_id="a")
    update = envelope("span-update", {"id": "s", "name": "from-update"}, ts=T0, event_id="b")
    assert observation([update, create])["name"] == "from-update"


def test_immutable_fields_keep_their_first_value():
    first = envelope("trace-create", {"id": "t", "timestamp": T0, "environment": "prod"}, ts=T0, event_id="a")
    later = envelope("trace-create", {"id": "t", "timestamp": T2, "environment": "dev"}, ts=T1, event_id="b")
    row = trace([later, first])
    assert row["timestamp"] == 1704067200000 and row["environment"] == "prod"


def test_start_time_cannot_be_changed_by_an_update():
    create = envelope("span-create", {"id": "s", "startTime": T0}, ts=T0, event_id="a")
    update = envelope("span-update", {"id": "s", "startTime": T2}, ts=T1, event_id="b")
    assert observation([create, update])["start_time"] == 1704067200000


def test_null_overwrites_but_absent_does_not():
    create = envelope("trace-create", {"id": "t", "name": "n", "userId": "u"}, ts=T0, event_id="a")
    update = envelope("trace-create", {"id": "t", "userId": None}, ts=T1, event_id="b")
    row = trace([create, update])
    assert row["user_id"] is None and row["name"] == "n"


def test_empty_usage_update_keeps_the_usage():
    create = envelope("generation-create", {"id": "g", "usage": {"input": 3, "output": 4}}, ts=T0, event_id="a")
    update = envelope("generation-update", {"id": "g", "usageDetails": {}}, ts=T1, event_id="b")
    assert observation([create, update])["usage_details"] == {"input": 3, "output": 4, "total": 7}


def test_usage_maps_replace_whole_not_key_by_key():
    create = envelope("generation-create", {"id": "g", "usageDetails": {"input": 3, "output": 4}}, ts=T0, event_id="a")
    update = envelope("generation-update", {"id": "g", "usageDetails": {"input": 10}}, ts=T1, event_id="b")
    assert observation([create, update])["usage_details"] == {"input": 10, "total": 10}


def test_tags_are_a_sorted_union_and_metadata_deep_merges_then_stringifies():
    a = envelope(
        "trace-create", {"id": "t", "tags": ["b", "a"], "metadata": {"foo": {"bar": "baz"}}}, ts=T0, event_id="a"
    )
    b = envelope("trace-create", {"id": "t", "tags": ["c", "a"], "metadata": {"hello": "world"}}, ts=T1, event_id="b")
    row = trace([a, b])
    assert row["tags"] == ["a", "b", "c"]
    assert row["metadata"] == {"foo": '{"bar":"baz"}', "hello": "world"}


def test_nested_metadata_objects_merge_key_by_key():
    a = envelope("trace-create", {"id": "t", "metadata": {"req": {"a": 1}}}, ts=T0, event_id="a")
    b = envelope("trace-create", {"id": "t", "metadata": {"req": {"b": 2}}}, ts=T1, event_id="b")
    assert orjson.loads(trace([b, a])["metadata"]["req"]) == {"a": 1, "b": 2}


def test_big_number_metadata_strings_are_kept_as_given():
    row = trace([envelope("trace-create", {"id": "t", "metadata": {"n": "1983516295378495150"}})])
    assert row["metadata"] == {"n": "1983516295378495150"}


def test_input_and_output_take_the_last_truthy_value():
    create = envelope(
        "generation-create", {"id": "g", "input": {"q": 1}, "output": "first", "model": "gpt-4o"}, ts=T0, event_id="a"
    )
    update = envelope("generation-update", {"id": "g", "output": "", "input": None}, ts=T1, event_id="b")
    row = observation([create, update])
    assert (row["input"], row["output"], row["provided_model_name"]) == ('{"q":1}', "first", "gpt-4o")


def test_end_time_is_clamped_to_start_time_and_level_defaults():
    event = envelope("span-create", {"id": "s", "startTime": T1, "endTime": T0})
    row = observation([event])
    assert row["end_time"] == row["start_time"] and row["level"] == "DEFAULT"


def test_model_parameters_and_parent_persist():
    event = envelope(
        "span-create", {"id": "s", "parentObservationId": "p", "modelParameters": {"someKey": ["user-1", "user-2"]}}
    )
    row = observation([event])
    assert row["parent_observation_id"] == "p"
    assert row["model_parameters"] == '{"someKey":["user-1","user-2"]}'


def test_orphan_observation_gets_a_deterministic_trace_id_unlike_langfuse_bug_17413():
    # Langfuse's random uuid fallback (bug #17413) would differ on every re-merge.
    rows = [observation([envelope("span-create", {"id": "orphan"})]) for _ in range(2)]
    assert rows[0]["trace_id"] == rows[1]["trace_id"] == "orphan"


def test_score_comment_null_on_update_clears_it():
    body = {"id": "s", "name": "q", "value": 1, "traceId": "t"}
    first = envelope("score-create", {**body, "comment": "hi"}, ts=T0, event_id="a")
    second = envelope("score-create", {**body, "comment": None}, ts=T1, event_id="b")
    rows = merged([first, second])
    assert next(r for k, r in rows.items() if k[0] == "score")["comment"] is None


def test_late_update_merges_with_the_stored_state():
    create = envelope("trace-create", {"id": "t", "name": "n", "tags": ["a"]}, ts=T0, event_id="a")
    update = envelope("trace-create", {"id": "t", "userId": "u", "tags": ["b"]}, ts=T1, event_id="b")
    late_old = envelope("trace-create", {"id": "t", "name": "older"}, ts="2023-12-31T00:00:00.000Z", event_id="c")
    # One event per batch and a state store that forgets: every event is merged with the persisted state.
    row = through_storage([create, update, late_old])
    assert (row["name"], row["user_id"], row["tags"]) == ("n", "u", ["a", "b"])


# Property: any arrival order, any duplication, any batching gives the reference fold's row.

_names = st.sampled_from(["a", "b", None])


@st.composite
def entity_histories(draw: Any) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=7))
    events = []
    for index in range(count):
        kind = draw(st.sampled_from(["span-create", "span-update"]))
        body: dict[str, Any] = {"id": "s", "traceId": "t"}
        if draw(st.booleans()):
            body["name"] = draw(_names)
        if draw(st.booleans()):
            body["output"] = draw(st.sampled_from(["x", "y", "", {"k": 1}]))
        if draw(st.booleans()):
            body["metadata"] = {draw(st.sampled_from(["m1", "m2"])): draw(st.sampled_from(["v1", "v2"]))}
        if draw(st.booleans()):
            body["startTime"] = f"2024-01-01T00:00:0{draw(st.integers(0, 5))}.000Z"
        second = draw(st.integers(min_value=0, max_value=3))
        events.append(envelope(kind, body, ts=f"2024-01-01T00:00:0{second}.000Z", event_id=f"ev{index}"))
    return events


@settings(max_examples=150, deadline=None)
@given(events=entity_histories(), data=st.data())
def test_any_order_duplication_and_batching_gives_the_reference_row(events, data):
    expected = reference_rows(events)[("observation", "p1", "s")]
    order = data.draw(st.permutations(list(range(len(events)))))
    duplicated = order + data.draw(st.lists(st.sampled_from(order), max_size=3))
    batches = data.draw(st.integers(min_value=1, max_value=3))
    row = observation(events, order=duplicated, batches=batches)
    assert row["name"] == (expected.get("name") or "")  # a null name is stored as ''
    for column in ("output", "start_time", "metadata", "type", "trace_id"):
        assert row[column] == expected.get(column), column


@st.composite
def trace_histories(draw: Any) -> list[dict[str, Any]]:
    events = []
    for index in range(draw(st.integers(min_value=1, max_value=6))):
        body: dict[str, Any] = {"id": "t"}
        if draw(st.booleans()):
            body["userId"] = draw(st.sampled_from(["u1", "u2", None]))
        if draw(st.booleans()):
            body["tags"] = draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=2))
        if draw(st.booleans()):
            nested = {draw(st.sampled_from(["x", "y"])): draw(st.integers(0, 2))}
            body["metadata"] = {"req": draw(st.sampled_from([nested, [1, 2], [3], "plain", nested]))}
        if draw(st.booleans()):
            body["input"] = draw(st.sampled_from(["q1", "q2", 0, {"k": [1]}]))
        second = draw(st.integers(min_value=0, max_value=3))
        events.append(envelope("trace-create", body, ts=f"2024-01-01T00:00:0{second}.000Z", event_id=f"ev{index}"))
    return events


@settings(max_examples=150, deadline=None)
@given(events=trace_histories(), data=st.data())
def test_any_order_of_trace_events_gives_the_reference_row(events, data):
    expected = reference_rows(events)[("trace", "p1", "t")]
    order = data.draw(st.permutations(list(range(len(events)))))
    duplicated = order + data.draw(st.lists(st.sampled_from(order), max_size=3))
    row = trace(events, order=duplicated, batches=data.draw(st.integers(min_value=1, max_value=3)))
    for column in ("user_id", "tags", "metadata", "input"):
        assert row[column] == expected.get(column), column


def test_an_equal_value_with_a_newer_clock_is_persisted():
    first = envelope("trace-create", {"id": "t", "name": "a"}, ts="2024-01-01T00:00:01.000Z", event_id="e1")
    third = envelope("trace-create", {"id": "t", "name": "a"}, ts="2024-01-01T00:00:03.000Z", event_id="e3")
    middle = envelope("trace-create", {"id": "t", "name": "b"}, ts="2024-01-01T00:00:02.000Z", event_id="e2")
    # Every event on a fresh worker: the middle event must lose against the persisted newer clock.
    assert through_storage([first, third, middle])["name"] == "a"


def test_a_producer_retry_after_dedup_memory_is_lost_changes_nothing():
    a = envelope("trace-create", {"id": "t", "name": "A"}, ts=T0, event_id="ev-a")
    b = envelope("trace-create", {"id": "t", "name": "B"}, ts=T0, event_id="ev-b")
    assert through_storage([a, b, a])["name"] == through_storage([a, b])["name"]


def test_a_late_earlier_event_that_moves_the_sort_key_deletes_the_old_row():
    later = envelope("trace-create", {"id": "t", "name": "n"}, ts="2024-01-02T00:00:00.000Z", event_id="b")
    earlier = envelope("trace-create", {"id": "t"}, ts="2024-01-01T23:00:00.000Z", event_id="a")
    processor = Processor(CATALOG, 5_000_000, 100, 100)
    processor.process([Record(value=orjson.dumps(later))], lambda keys: {}, 0)
    out = processor.process([Record(value=orjson.dumps(earlier))], lambda keys: {}, 0)
    deleted, current = out.rows["traces"]
    # The old row (2 January) is deleted under its own sort key; the new one lives on 1 January.
    assert (deleted["timestamp"], deleted["is_deleted"]) == (1704153600000, 1)
    assert (current["timestamp"], current["is_deleted"], current["name"]) == (1704150000000, 0, "n")


def test_nested_metadata_deep_merges_across_a_reload_too():
    a = envelope("trace-create", {"id": "t", "metadata": {"a": {"x": 1}}}, ts=T0, event_id="a")
    b = envelope("trace-create", {"id": "t", "metadata": {"a": {"y": 2}}}, ts=T1, event_id="b")
    assert through_storage([a, b])["metadata"] == trace([a, b])["metadata"] == {"a": '{"x":1,"y":2}'}


def test_a_crash_between_rows_and_clocks_is_repaired_by_redelivery():
    from tests.unit.helpers import as_stored

    create = envelope("span-create", {"id": "s", "name": "n"}, ts=T0, event_id="a")
    update = envelope("span-update", {"id": "s", "endTime": T1, "output": "done"}, ts=T1, event_id="b")
    stored: dict = {}

    def flush(events: list, write_clocks: bool) -> dict:
        processor = Processor(CATALOG, 5_000_000, 100, 100)  # a fresh worker each time
        out = processor.process(
            [Record(value=orjson.dumps(e)) for e in events], lambda keys: {k: stored[k] for k in keys if k in stored}, 0
        )
        row = out.rows["observations"][-1]
        key = ("observation", "p1", "s")
        # The worker writes rows, then clocks; a crash may fall in between.
        stored[key] = (as_stored(row), stored.get(key, ({}, {}))[1])
        if write_clocks:
            stored[key] = (as_stored(row), out.clocks[0][3])
        return row

    flush([create], write_clocks=True)
    flush([update], write_clocks=False)  # killed after the row insert; the batch was not committed
    row = flush([update], write_clocks=True)  # redelivered
    assert (row["end_time"], row["output"], row["name"]) == (1704067201000, "done", "n")


def test_a_late_create_sets_the_trace_id_of_an_observation_first_stored_from_its_update():
    # The update (no traceId) is stored first: the row falls back to the observation's own id as trace id. That
    # fallback is not an event's value, so the create arriving after a restart must still set the trace id.
    update = envelope("generation-update", {"id": "g", "output": "x"}, ts=T1, event_id="u")
    create = envelope("generation-create", {"id": "g", "traceId": "t", "startTime": T0}, ts=T0, event_id="c")
    row = through_storage([update, create])
    assert (row["trace_id"], row["output"]) == ("t", "x")
    assert row == through_storage([create, update]) | {k: row[k] for k in ("updated_at", "event_ts", "created_at")}


def test_a_message_whose_key_breaks_the_rule_is_a_dead_letter_when_keys_are_checked():
    from pipeline.producer import message_key

    good = envelope("trace-create", {"id": "t", "name": "n"}, event_id="a")
    wrong = envelope("trace-create", {"id": "u", "name": "n"}, event_id="b")
    delete = envelope("trace-delete", {"id": "t"}, event_id="c")
    records = [
        Record(value=orjson.dumps(good), key=message_key(good)),
        Record(value=orjson.dumps(wrong), key=b"p1:trace:t"),
        Record(value=orjson.dumps(delete), key=b"p1:trace:t"),
    ]
    out = Processor(CATALOG, 5_000_000, 100, 100, check_keys=True).process(records, lambda keys: {}, 0)
    (letter,) = out.dead_letters
    assert letter.kind == "wrong_key" and letter.record is records[1]
    assert "'p1:trace:u'" in letter.reason
    assert [row["id"] for row in out.rows["traces"]] == ["t"] and len(out.deletions) == 1


def test_an_entity_whose_row_cannot_be_built_is_a_dead_letter_and_its_batch_goes_on(monkeypatch):
    import pipeline.runtime.processor as processor_module

    build = processor_module.rows_for

    def failing(state: Any, now_ms: int, models: Any) -> list:
        if state.entity_id == "bad":
            raise RecursionError("maximum recursion depth exceeded")
        return build(state, now_ms, models)

    monkeypatch.setattr(processor_module, "rows_for", failing)
    events = [envelope("trace-create", {"id": i, "name": i}, event_id=f"e-{i}") for i in ("ok", "bad", "fine")]
    processor = Processor(CATALOG, 5_000_000, 100, 100)
    out = processor.process([Record(value=orjson.dumps(e)) for e in events], lambda keys: {}, 0)
    assert sorted(row["id"] for row in out.rows["traces"]) == ["fine", "ok"]
    (letter,) = out.dead_letters
    assert letter.kind == "internal_error" and "RecursionError" in letter.reason
    assert orjson.loads(letter.record.value)["id"] == "e-bad"
    assert out.counts["processed"] == 2 and ("trace", "p1", "bad") not in processor.states
    processor.mark_durable(out)
    assert event_key("p1", "e-bad") not in processor.seen and event_key("p1", "e-ok") in processor.seen
