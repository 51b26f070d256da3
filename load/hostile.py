"""Hostile messages for the ingestion topic: structure-aware fuzzing of envelopes, bodies, keys and headers.

A seeded generator (same seed, same bytes). Each message starts from a valid Langfuse event of a random type and
gets one mutation: raw bytes that are barely JSON, an envelope or body field replaced by a hostile value, hostile
id and project alphabets, impossible or extreme dates, extreme numbers, sizes up to past the size limit, deep
nesting, base64 media that lies about itself, huge or binary headers, and keys that break the key rule. Some
mutations leave the event valid (extreme but legal values): those must be stored, the rest dead-lettered with a
reason; no message may crash or stall a worker. Projects are ``hostile-*`` (or hostile themselves), so they
never touch the entities of valid neighbours.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.producer import message_key
from pipeline.recordfile import Record

EVENT_TYPES = (
    "trace-create",
    "span-create",
    "span-update",
    "generation-create",
    "generation-update",
    "event-create",
    "agent-create",
    "tool-create",
    "score-create",
    "sdk-log",
    "observation-create",
    "observation-update",
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
HOSTILE_STRINGS = (
    "",
    " ",
    "\x00",
    "\x00" * 100,
    "a\rb",
    "a\nb",
    "\u202eevil",
    "\ufeff",
    "💥" * 300,
    "x" * 801,
    "x" * 100_000,
    "../../etc/passwd",
    "..",
    ".",
    "/",
    "' OR 1=1 --",
    '"; DROP TABLE traces; --',
    "{{7*7}}",
    "@@@langfuseMedia:type=image/png|id=../../x|source=bytes@@@",
    "data:image/png;base64,AAAA",
    "data:text/html;base64," + base64.b64encode(b"<script>x</script>").decode(),
    "NaN",
    "Infinity",
    "-0",
    "1e999",
    "2024-13-45T25:61:61Z",
    "null",
    "\\ud800",
)
HOSTILE_NUMBERS = (0, -1, 1, 2**31, 2**63, 2**64 - 1, 2**64, 10**30, -(10**30), 1e308, -1e308, 5e-324, -0.0, 0.5)
HOSTILE_TIMESTAMPS = (
    "0001-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "1900-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "2299-12-31T23:59:59.999Z",
    "2300-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01T00:00:00",
    "2024-01-01T00:00:00+25:00",
    "2024-01-01T00:00:00.123456789Z",
    "2024-01-01",
    "yesterday",
    "",
)
HOSTILE_KEYS = (None, b"", b"wrong", b"p:trace:", b"\xff\xfe\x00", b"k" * 100_000)


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A value of any JSON type, chosen to be awkward."""
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(HOSTILE_STRINGS)
    if roll < 0.6:
        return rng.choice(HOSTILE_NUMBERS)
    if roll < 0.7:
        return rng.choice((None, True, False))
    if depth > 2 or roll < 0.85:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(HOSTILE_STRINGS)[:40]: hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def base_event(rng: random.Random, n: int) -> dict[str, Any]:
    """A valid event of a random type, in a project of its own (hostile events never touch valid neighbours)."""
    kind = rng.choice(EVENT_TYPES)
    body: dict[str, Any] = {"id": f"h-{n}", "name": f"hostile {n}"}
    if kind.startswith("observation-"):
        body["type"] = rng.choice(("SPAN", "GENERATION", "EVENT"))
    if kind != "trace-create" and kind != "score-create":
        body["traceId"] = f"h-trace-{n % 50}"
    if kind.startswith("generation"):
        body.update(model="gpt-4o", input=[{"role": "user", "content": "hi"}], output="hello")
        body["usageDetails"] = {"input": rng.randint(0, 100), "output": rng.randint(0, 100)}
    if kind == "score-create":
        body = {"id": f"h-{n}", "name": "quality", "value": rng.random(), "traceId": f"h-trace-{n % 50}"}
    if kind == "sdk-log":
        body = {"log": {"message": "hi"}}
    return {
        "id": f"hev-{n}",
        "timestamp": "2026-11-01T00:00:00.000Z",
        "type": kind,
        "project_id": f"hostile-{n % 7}",
        "body": body,
    }


def _keyed(event: dict[str, Any]) -> Record:
    # The standard library writes integers past 64 bits, which orjson refuses to.
    value = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    return Record(value, message_key(event))


def raw_bytes(rng: random.Random, event: dict[str, Any]) -> Record:
    whole = _keyed(event).value
    choices = (
        bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400))),
        whole[: rng.randint(0, len(whole) - 1)],
        b"",
        b"null",
        b"[]",
        b"1e999",
        b'"just a string"',
        b"[" * 3000 + b"]" * 3000,
        whole.replace(b'"hostile', b'"\\ud800hostile', 1),
        whole.replace(b'"hostile', b'"\xc3\x28hostile', 1),
        whole + b" trailing",
    )
    return Record(rng.choice(choices), rng.choice(HOSTILE_KEYS))


def envelope_field(rng: random.Random, event: dict[str, Any]) -> Record:
    name = rng.choice(("id", "timestamp", "type", "project_id", "body", "metadata"))
    if rng.random() < 0.3:
        event.pop(name, None)
    else:
        event[name] = hostile_value(rng)
    return _keyed(event)


def body_field(rng: random.Random, event: dict[str, Any]) -> Record:
    fields = (
        "id",
        "traceId",
        "name",
        "input",
        "output",
        "metadata",
        "tags",
        "environment",
        "level",
        "startTime",
        "endTime",
        "model",
        "modelParameters",
        "usage",
        "usageDetails",
        "costDetails",
        "promptName",
        "promptVersion",
        "value",
        "dataType",
        "public",
        "parentObservationId",
        "sessionId",
        "configId",
    )
    body = event["body"] if isinstance(event["body"], dict) else {}
    for _ in range(rng.randint(1, 3)):
        body[rng.choice(fields)] = hostile_value(rng)
    return _keyed(event)


def identifiers(rng: random.Random, event: dict[str, Any]) -> Record:
    which = rng.choice(("id", "project_id", "body.id", "body.traceId"))
    value = rng.choice((*HOSTILE_STRINGS, "p", "acme:prod", "a..b", "x" * 256, "x" * 257))
    if which.startswith("body."):
        event["body"][which[5:]] = value
    else:
        event[which] = value
    return _keyed(event)


def timestamps(rng: random.Random, event: dict[str, Any]) -> Record:
    stamp = rng.choice(HOSTILE_TIMESTAMPS)
    if rng.random() < 0.5:
        event["timestamp"] = stamp
    else:
        event["body"][rng.choice(("timestamp", "startTime", "endTime", "completionStartTime"))] = stamp
    return _keyed(event)


def numbers(rng: random.Random, event: dict[str, Any]) -> Record:
    body = event["body"]
    target = rng.choice(("usageDetails", "costDetails", "usage", "value", "promptVersion"))
    number = rng.choice(HOSTILE_NUMBERS)
    if target in ("usageDetails", "costDetails"):
        body[target] = {rng.choice(("input", "output", "total", "cached", "x" * 300)): number}
    elif target == "usage":
        body[target] = {"input": number, "output": rng.choice(HOSTILE_NUMBERS), "unit": "TOKENS"}
    else:
        body[target] = number
        if target == "promptVersion":
            body["promptName"] = "p"
    return _keyed(event)


def sizes(rng: random.Random, event: dict[str, Any]) -> Record:
    # Mostly large but legal; now and then past the 4.5 MB limit.
    size = rng.choices((5_000, 50_000, 300_000, 4_600_000), weights=(600, 300, 95, 5))[0]
    event["body"][rng.choice(("input", "output", "name", "tags"))] = (
        "y" * size if rng.random() < 0.8 else ["t"] * 10_000
    )
    return _keyed(event)


def nesting(rng: random.Random, event: dict[str, Any]) -> Record:
    depth = rng.choice((50, 199, 200, 201, 254, 255, 300, 900))
    marker = "NESTING-HERE"
    event["body"][rng.choice(("input", "output", "metadata"))] = marker
    opener, closer = (b'{"k":', b"}") if rng.random() < 0.5 else (b"[", b"]")
    nested = opener * depth + b"1" + closer * depth
    record = _keyed(event)
    return Record(record.value.replace(f'"{marker}"'.encode(), nested), record.key)


def media(rng: random.Random, event: dict[str, Any]) -> Record:
    payload = rng.choice((PNG, b"not an image at all", PNG[:12], bytes(2048), PNG * 50))
    mime = rng.choice(("image/png", "image/jpeg", "text/html", "image/../../x", "a" * 300, "IMAGE/PNG"))
    uri = f"data:{mime};base64,{base64.b64encode(payload).decode()}"
    if rng.random() < 0.3:
        uri = uri[:-3] + "!!!"  # undecodable
    event["body"][rng.choice(("input", "output", "metadata"))] = {"image": uri, "parts": [{"type": "image", "x": uri}]}
    return _keyed(event)


def headers(rng: random.Random, event: dict[str, Any]) -> Record:
    record = _keyed(event)
    choice = rng.random()
    if choice < 0.02:
        found = [("x-junk", bytes(rng.choice((2_000_000, 10_000_000))))]
    elif choice < 0.4:
        found = [(f"h{i}", bytes(rng.getrandbits(8) for _ in range(8))) for i in range(rng.randint(1, 300))]
    else:
        attribution = ("x-langfuse-public-key", "x-langfuse-sdk-name", "x-langfuse-sdk-version")
        found = [(rng.choice(attribution), rng.choice(HOSTILE_STRINGS).encode(errors="surrogatepass")[:50_000])]
    return Record(record.value, record.key, headers=tuple(found))


def keys(rng: random.Random, event: dict[str, Any]) -> Record:
    return Record(_keyed(event).value, rng.choice(HOSTILE_KEYS))


MUTATIONS: tuple[Callable[[random.Random, dict[str, Any]], Record], ...] = (
    raw_bytes,
    envelope_field,
    body_field,
    body_field,
    identifiers,
    timestamps,
    numbers,
    sizes,
    nesting,
    media,
    headers,
    keys,
)


def hostile_records(count: int, seed: int) -> Iterator[Record]:
    """``count`` hostile messages; about one in fifty repeats an earlier one byte for byte."""
    rng = random.Random(seed)
    recent: list[Record] = []
    for n in range(count):
        if recent and rng.random() < 0.02:
            yield rng.choice(recent)
            continue
        record = rng.choice(MUTATIONS)(rng, base_event(rng, n))
        recent = [*recent[-50:], record]
        yield record
