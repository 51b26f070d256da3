"""Media extraction: data URIs and provider shapes become tokens and content-addressed objects; SDK tokens are
linked; mistyped, undecodable and small payloads stay inline."""

from __future__ import annotations

import base64
import hashlib

import orjson

from pipeline.recordfile import Record
from pipeline.runtime.processor import Processor
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.media import TOKEN, Extraction, Limits, extract, media_object_key

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n" + b"0" * 3000
LIMITS = Limits(min_bytes=1024)


def _uri(content_type: str, content: bytes) -> str:
    return f"data:{content_type};base64," + base64.b64encode(content).decode()


def test_a_data_uri_becomes_a_token_with_langfuses_content_address():
    found = Extraction()
    value = {
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _uri("image/png", PNG)}}]}]
    }
    result = extract(value, "input", LIMITS, found)

    stored = result["messages"][0]["content"][0]["image_url"]["url"]
    match = TOKEN.match(stored)
    assert match, stored
    expected_id = base64.urlsafe_b64encode(hashlib.sha256(PNG).digest()).decode()[:22]
    assert match.groups() == ("image/png", expected_id, "base64_data_uri")
    [media] = found.objects
    assert (media.media_id, media.content, media.content_type) == (expected_id, PNG, "image/png")
    assert media.sha256 == base64.b64encode(hashlib.sha256(PNG).digest()).decode() and len(media.sha256) == 44
    assert media_object_key("p1", media.media_id, media.content_type) == f"media/p1/{expected_id}.png"
    assert [(r.media_id, r.field) for r in found.references] == [(expected_id, "input")]
    assert value["messages"][0]["content"][0]["image_url"]["url"].startswith("data:"), "the input is not mutated"


def test_provider_shapes_keep_their_shape_with_a_token_as_data():
    found = Extraction()
    anthropic = {
        "type": "image",
        "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(PDF).decode()},
    }
    gemini = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(PNG).decode()}}
    result = extract([anthropic, gemini], "output", LIMITS, found)
    assert result[0]["source"]["type"] == "base64" and TOKEN.match(result[0]["source"]["data"])
    assert TOKEN.match(result[1]["inline_data"]["data"])
    assert sorted(m.content_type for m in found.objects) == ["application/pdf", "image/png"]


def test_identical_content_gives_one_id():
    found = Extraction()
    result = extract({"a": _uri("image/png", PNG), "b": _uri("image/png", PNG)}, "metadata", LIMITS, found)
    assert result["a"] == result["b"]
    assert len({m.media_id for m in found.objects}) == 1


def test_an_sdk_token_is_linked_not_stored_again():
    found = Extraction()
    sdk_token = "@@@langfuseMedia:type=image/jpeg|id=AbCdEfGhIjKlMnOpQrStUv|source=bytes@@@"
    assert extract({"image": sdk_token}, "input", LIMITS, found) == {"image": sdk_token}
    assert found.objects == []
    assert [(r.media_id, r.content_type, r.field) for r in found.references] == [
        ("AbCdEfGhIjKlMnOpQrStUv", "image/jpeg", "input")
    ]


def test_payloads_that_do_not_qualify_stay_inline():
    found = Extraction()
    mistyped = _uri("image/png", PDF)  # the bytes are a PDF
    broken = "data:image/png;base64," + "!!notbase64!!" * 200
    small = _uri("image/png", PNG[:100])
    too_big = _uri("application/octet-stream", b"x" * 5000)
    values = [mistyped, broken, small, too_big, "data:text/plain,hello", "plain text ;base64, here"]
    assert extract(values, "input", Limits(min_bytes=1024, max_bytes=4096), found) == values
    assert found.objects == [] and found.references == []
    assert found.kept_inline == 3  # small ones are not candidates at all


def test_a_type_without_a_known_signature_is_taken_as_declared():
    found = Extraction()
    csv = b"a,b\n" * 600
    assert TOKEN.match(extract(_uri("text/csv", csv), "input", LIMITS, found))
    assert media_object_key("p1", found.objects[0].media_id, found.objects[0].content_type).endswith(".csv")


def test_a_link_from_an_update_names_the_trace_of_the_merged_observation():
    def event(n: int, event_type: str, body: dict) -> Record:
        envelope = {"id": f"ev-{n}", "timestamp": f"2026-11-01T00:00:0{n}Z", "type": event_type, "project_id": "p"}
        return Record(orjson.dumps({**envelope, "body": body}), offset=n)

    processor = Processor(Catalog.with_defaults(), 1_000_000, 1000, 1000)
    first = processor.process([event(1, "generation-create", {"id": "g", "traceId": "t"})], lambda keys: {}, 0)
    processor.mark_durable(first)
    update = event(2, "generation-update", {"id": "g", "output": {"image": _uri("image/png", PNG)}})
    out = processor.process([update], lambda keys: {}, 0)
    [link] = out.rows["media"]
    assert (link["trace_id"], link["observation_id"], link["field"]) == ("t", "g", "output")
    assert TOKEN.match(out.rows["observations"][0]["output"].split('"image":"')[1].split('"')[0])


def test_content_types_that_cannot_name_an_object_stay_inline():
    found = Extraction()
    long_type = _uri("image/" + "x" * 300, PNG)
    odd_type = _uri("image/png|id=forged", PNG)
    assert extract([long_type, odd_type], "input", LIMITS, found) == [long_type, odd_type]
    # The forged type is a data URI that fails the check; a type that long is not read as a data URI at all.
    assert found.objects == [] and found.kept_inline == 1
