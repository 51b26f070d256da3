import base64
import hashlib

import orjson
import pytest

from pipeline.transforms.validate import IngestionEvent, Rejected
from tests.unit.helpers import envelope, parse


def test_valid_trace_create_becomes_an_event_keyed_by_body_id():
    event = parse(envelope("trace-create", {"id": "t1", "name": "chat"}))
    assert isinstance(event, IngestionEvent)
    assert (event.entity, event.entity_id, event.project_id) == ("trace", "t1", "p1")
    assert event.timestamp_ms == 1704067200000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "e1", ', "malformed JSON"),
        (orjson.dumps(envelope("trace-upsert", {"id": "t"})), "unknown event type 'trace-upsert'"),
        (orjson.dumps({**envelope("trace-create", {"id": "t"}), "id": "a\rb"}), "carriage return"),
        (orjson.dumps({**envelope("trace-create", {"id": "t"}), "id": "x" * 801}), "longer than 800"),
        (orjson.dumps(envelope("trace-create", {"id": "t", "name": "n" * 1001})), "longer than 1000"),
        (orjson.dumps(envelope("trace-create", {"id": "t"}, ts="2024-01-01 00:00:00")), "no UTC offset"),
        (orjson.dumps(envelope("span-create", {"name": "no id"})), "no id"),
        (orjson.dumps(envelope("generation-create", {"id": "g", "promptName": "p"})), "set together"),
        (
            orjson.dumps({"id": "e", "timestamp": "2024-01-01T00:00:00Z", "type": "trace-create", "body": {}}),
            "project_id",
        ),
    ],
)
def test_rejections_say_why(raw, reason):
    outcome = parse(raw)
    assert isinstance(outcome, Rejected)
    assert reason in outcome.reason


def test_oversized_message_is_rejected_before_parsing():
    from pipeline.transforms.validate import parse_event

    outcome = parse_event(b"{" + b" " * 2000 + b"}", 1024)
    assert isinstance(outcome, Rejected) and "exceeds the limit of 1024 bytes" in outcome.reason


def test_sdk_log_is_valid_and_stores_nothing():
    assert parse(envelope("sdk-log", {"log": "hello"})) is None


def test_score_without_id_takes_the_envelope_id_so_redelivery_is_stable():
    event = parse(envelope("score-create", {"name": "q", "value": 1, "traceId": "t"}, event_id="ev-9"))
    assert isinstance(event, IngestionEvent) and event.entity_id == "ev-9"


@pytest.mark.parametrize("environment", ["langfuse-test", ".invalidcharacter!", "x" * 41 + "!", 42])
def test_invalid_environment_is_not_a_rejection(environment):
    assert isinstance(parse(envelope("trace-create", {"id": "t", "environment": environment})), IngestionEvent)


def test_float_usage_details_are_accepted_then_dropped():
    event = parse(envelope("generation-create", {"id": "g", "usageDetails": {"input": 1.5, "output": 3}}))
    assert isinstance(event, IngestionEvent)


@pytest.mark.parametrize(
    "special",
    ["&", "$", "@", "=", ";", "/", "+", ",", "?", "{", "}", "^", "%", "]", '"', ">", "[", "~", "<", "#", "|", " ", "`"],
)
def test_ids_with_special_characters_round_trip(special):
    body_id = f"id{special}x"
    event = parse(envelope("trace-create", {"id": body_id}, event_id=f"ev{special}"))
    assert isinstance(event, IngestionEvent)
    assert (event.entity_id, event.event_id) == (body_id, f"ev{special}")


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("generation-create", {"id": "g", "promptName": "p", "promptVersion": 70000}, "65535"),
        ("generation-create", {"id": "g", "promptName": "p", "promptVersion": -1}, ">= 0"),
        ("span-create", {"id": "s", "traceId": "t\r1"}, "carriage return"),
        ("span-create", {"id": "s", "startTime": "9999-12-31T23:59:59-14:00"}, "outside 1900-01-01..2299-12-31"),
        ("span-create", {"id": "s", "startTime": "0001-01-01T00:00:00+01:00"}, "outside"),
    ],
)
def test_values_clickhouse_cannot_store_are_rejected_not_retried_forever(kind, body, reason):
    outcome = parse(envelope(kind, body))
    assert isinstance(outcome, Rejected) and reason in outcome.reason


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("field", ["metadata", "input", "output"])
def test_values_nested_deeper_than_the_limit_are_rejected_with_the_field_named(field):
    from pipeline.transforms.validate import MAX_NESTING

    deep = parse(envelope("trace-create", {"id": "t", field: _nested(MAX_NESTING + 1)}))
    assert isinstance(deep, Rejected) and deep.kind == "invalid_body"
    assert f"body.{field} nests arrays and objects more than {MAX_NESTING} levels deep" in deep.reason
    assert isinstance(parse(envelope("trace-create", {"id": "t", field: _nested(MAX_NESTING)})), IngestionEvent)


def test_nesting_counts_arrays_and_objects_and_stops_early():
    from pipeline.transforms.validate import nesting

    assert nesting("x", 5) == 0 and nesting([], 5) == 1 and nesting({"a": [{"b": 1}]}, 5) == 3
    assert nesting(_nested(10_000), 5) == 6


@pytest.mark.parametrize("project", [".", "..", ".hidden", "-x", "a/b", "", "p" * 257, "a b"])
def test_project_ids_that_cannot_be_part_of_an_object_key_are_rejected(project):
    outcome = parse({**envelope("trace-create", {"id": "t"}), "project_id": project})
    assert isinstance(outcome, Rejected) and outcome.kind == "invalid_envelope"
    assert "starting with a letter or digit" in outcome.reason


@pytest.mark.parametrize("project", ["p", "acme:prod", "7a88fb47-b4e2-43b8-a06c-a5ce950dc53a", "a..b", "x" * 256])
def test_project_ids_of_letters_digits_and_separators_pass(project):
    assert isinstance(parse({**envelope("trace-create", {"id": "t"}), "project_id": project}), IngestionEvent)


def test_a_media_upload_must_name_the_id_its_hash_gives():
    digest = hashlib.sha256(b"a file").digest()
    body = {
        "id": base64.urlsafe_b64encode(digest).decode()[:22],
        "traceId": "t1",
        "field": "input",
        "contentType": "image/png",
        "contentLength": 6,
        "sha256Hash": base64.b64encode(digest).decode(),
    }
    event = {"project_id": "p1", "id": "e1", "timestamp": "2026-01-01T00:00:00Z", "type": "media-upload"}
    accepted = parse(orjson.dumps({**event, "body": body}))
    assert not isinstance(accepted, Rejected) and accepted.entity_id == body["id"]
    forged = parse(orjson.dumps({**event, "body": {**body, "id": "A" * 22}}))
    assert isinstance(forged, Rejected) and "sha256Hash" in forged.reason


def test_times_are_written_as_langfuse_writes_them():
    from pipeline.transforms.validate import iso_utc, parse_timestamp_ms

    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(-1) == "1969-12-31T23:59:59.999Z"
    assert iso_utc(1_764_000_000_123) == "2025-11-24T16:00:00.123Z"
    assert parse_timestamp_ms(iso_utc(1_764_000_000_123)) == 1_764_000_000_123
