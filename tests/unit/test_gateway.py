"""The gateway's pure parts: keys, authorization, the batch API's per-event results, media announcements."""

from __future__ import annotations

import base64
import hashlib

import msgspec
import orjson
import pytest

from pipeline.gateway.auth import ALL, SCORES, Caller, Unauthorized, authenticate
from pipeline.gateway.batch_api import InvalidRequest, plan_batch, with_project
from pipeline.gateway.keys import KeyRing, config_key, make_key
from pipeline.gateway.media_api import InvalidMedia, check_upload, object_key, upload_event
from pipeline.transforms.media import content_address
from pipeline.transforms.validate import IngestionEvent, parse_event

CALLER = Caller("proj-1", "pk-lf-1", ALL)
WHEN = "2026-01-01T00:00:00.000Z"


def ring_with(project: str, public: str, secret: str) -> KeyRing:
    ring = KeyRing()
    ring.apply(config_key(project, public), msgspec.to_builtins(make_key(project, public, secret, "test")))
    return ring


def basic(public: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{public}:{secret}".encode()).decode()


def test_a_key_is_stored_as_a_salted_hash_and_checked_against_it():
    key = make_key("proj-1", "pk-lf-1", "sk-lf-secret", "n")
    assert "sk-lf-secret" not in orjson.dumps(msgspec.to_builtins(key)).decode()
    assert key.salt != make_key("proj-1", "pk-lf-1", "sk-lf-secret", "n").salt  # a fresh salt each time
    ring = ring_with("proj-1", "pk-lf-1", "sk-lf-secret")
    assert ring.authenticate("pk-lf-1", "sk-lf-secret").project_id == "proj-1"
    assert ring.authenticate("pk-lf-1", "sk-lf-wrong") is None
    assert ring.authenticate("pk-lf-2", "sk-lf-secret") is None


def test_a_null_record_revokes_and_other_kinds_are_not_the_gateways():
    ring = ring_with("proj-1", "pk-lf-1", "sk-lf-secret")
    ring.apply("model/*/gpt-x", {"anything": 1})
    ring.apply(config_key("proj-1", "pk-lf-1"), None)
    assert ring.keys == {}


def test_basic_and_bearer_authorization_with_langfuses_reasons():
    ring = ring_with("proj-1", "pk-lf-1", "sk-lf-secret")
    assert authenticate(basic("pk-lf-1", "sk-lf-secret"), ring) == Caller("proj-1", "pk-lf-1", ALL)
    assert authenticate(basic("pk-lf-1", "sk-lf-secret:extra"), ring).scope == ALL  # only two parts are used
    assert authenticate("Bearer pk-lf-1", ring) == Caller("proj-1", "pk-lf-1", SCORES)
    for header, reason in [
        (None, "No authorization header"),
        ("Basic !!!", "Invalid authorization header"),
        ("Digest abc", "Invalid authorization header"),
        (basic("pk-lf-1", "nope"), "Invalid credentials"),
        ("Bearer pk-lf-unknown", "Invalid credentials"),
    ]:
        with pytest.raises(Unauthorized, match=reason):
            authenticate(header, ring)


def event(event_id: str, kind: str, body: dict, **extra: object) -> dict:
    return {"id": event_id, "timestamp": WHEN, "type": kind, "body": body, **extra}


def test_the_207_lists_each_event_and_only_valid_ones_are_produced():
    batch = [
        event("e1", "trace-create", {"id": "t1", "name": "n"}),
        event("e2", "span-create", {"traceId": "t1"}),  # no body id
        event("e3", "sdk-log", {"log": {"m": 1}}),
        event("e4", "trace-delete", {"id": "t1"}),  # lfpipe's, not over HTTP
        7,
        event("e6", "score-create", {"name": "s", "value": 1, "traceId": "t1"}),
    ]
    planned = plan_batch(
        orjson.dumps({"batch": batch, "metadata": {"sdk": 1}}), CALLER, {"x-langfuse-sdk-name": "py"}, 10**6
    )
    assert planned.successes == [{"id": "e1", "status": 201}, {"id": "e6", "status": 201}]
    assert [(e["id"], e["status"]) for e in planned.errors] == [("e2", 400), ("e4", 400), ("unknown", 400)]
    assert planned.outcomes == {"accepted": 2, "rejected": 3, "sdk_log": 1}
    assert [m.key for m in planned.messages] == [b"proj-1:trace:t1", b"proj-1:score:e6"]
    assert all(dict(m.headers)["x-langfuse-sdk-name"] == b"py" for m in planned.messages)
    assert all(isinstance(parse_event(m.value, 10**6), IngestionEvent) for m in planned.messages)
    assert [letter.kind for letter in planned.letters] == ["invalid_body", "unknown_type", "invalid_body"]
    assert all(letter.record.topic == "gateway" for letter in planned.letters)
    assert len({letter.record.offset for letter in planned.letters}) == 3  # told apart by readers


def test_the_project_is_the_keys_never_the_events():
    forged = event("e1", "trace-create", {"id": "t1"}, project_id="someone-else")
    escaped = orjson.dumps(forged).replace(b'"project_id"', b'"project\\u005fid"')
    bad_and_forged = {**forged, "timestamp": "yesterday"}
    for raw in (orjson.dumps(forged), escaped, orjson.dumps(bad_and_forged)):
        planned = plan_batch(b'{"batch":[' + raw + b"]}", CALLER, {}, 10**6)
        [value] = [m.value for m in planned.messages] or [letter.record.value for letter in planned.letters]
        assert orjson.loads(value)["project_id"] == "proj-1", value
    assert with_project(b"[1]", "proj-1") is None and with_project(b"{}", "proj-1") == b'{"project_id":"proj-1"}'


def test_bearer_callers_may_send_scores_only():
    batch = [
        event("e1", "trace-create", {"id": "t1"}),
        event("e2", "score-create", {"name": "s", "value": 1, "traceId": "t1"}),
    ]
    planned = plan_batch(orjson.dumps({"batch": batch}), Caller("proj-1", "pk", SCORES), {}, 10**6)
    assert planned.errors == [
        {"id": "e1", "status": 401, "message": "Authentication error", "error": "Access Scope Denied"}
    ]
    assert planned.successes == [{"id": "e2", "status": 201}]


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"batch": 3}', b'{"events": []}'])
def test_a_body_that_is_not_a_batch_is_refused_whole(body):
    with pytest.raises(InvalidRequest):
        plan_batch(body, CALLER, {}, 10**6)


def test_an_empty_batch_is_an_empty_207():
    assert plan_batch(b'{"batch": []}', CALLER, {}, 10**6).response() == {"successes": [], "errors": []}


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def announcement(**changes: object) -> bytes:
    digest = base64.b64encode(hashlib.sha256(PNG).digest()).decode()
    body = {
        "traceId": "t1",
        "observationId": "o1",
        "field": "input",
        "contentType": "image/png",
        "contentLength": len(PNG),
        "sha256Hash": digest,
    }
    return orjson.dumps({**body, **changes})


def test_an_announced_file_gets_the_workers_object_key_and_a_valid_link_event():
    upload = check_upload(announcement(), 10**9)
    media_id, _ = content_address(PNG)
    assert object_key("proj-1", upload) == f"media/proj-1/{media_id}.png"  # where extraction puts the same bytes
    link = upload_event("proj-1", upload, WHEN)
    assert link["body"]["id"] == media_id and link == upload_event("proj-1", upload, WHEN)
    assert isinstance(parse_event(orjson.dumps(link), 10**6), IngestionEvent)


@pytest.mark.parametrize(
    "changes",
    [
        {"contentType": "image/x-unknown"},
        {"contentLength": 0},
        {"sha256Hash": "short"},
        {"field": "prompt"},
        {"traceId": ""},
    ],
)
def test_a_bad_announcement_is_refused(changes):
    with pytest.raises(InvalidMedia):
        check_upload(announcement(**changes), 10**9)
