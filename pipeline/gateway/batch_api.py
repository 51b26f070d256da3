"""``POST /api/public/ingestion``, the pure part: a request body to the messages to produce and the 207 lists.

Each event is checked by the worker's own validation (``transforms/validate.parse_event``), so a client learns
at once what the worker would dead-letter: a 400 inside the 207, and a dead letter with the reason and the
SDK's name, version and public key (Dify and RAGFlow never read the 207). The project comes from the API key,
never from the event.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from pipeline.gateway.auth import SCORES, Caller
from pipeline.outcomes import ReasonKind
from pipeline.producer import message_key as best_effort_key
from pipeline.recordfile import Record
from pipeline.runtime.batch import DeadLetter
from pipeline.transforms.events import ENTITY_BY_TYPE, EXTENSION_TYPES, message_key
from pipeline.transforms.validate import IngestionEvent, Rejected, parse_event

GATEWAY_TOPIC = "gateway"  # the origin a gateway's dead letter names: it never was in the ingestion topic
ATTRIBUTION = ("x-langfuse-public-key", "x-langfuse-sdk-name", "x-langfuse-sdk-version")
SCOPE_TYPES = frozenset({"score-create", "sdk-log"})


class BatchRequest(msgspec.Struct):
    batch: list[msgspec.Raw]
    metadata: Any = None  # Langfuse validates it as JSON and ignores it


BATCH_DECODER = msgspec.json.Decoder(BatchRequest)


class InvalidRequest(Exception):
    """The whole request is refused: 400 ``{"message": "Invalid request data", "errors": [...]}``."""


@dataclass
class Planned:
    messages: list[Record] = field(default_factory=list)
    successes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # accepted, rejected, sdk_log, scope_denied

    def response(self) -> dict[str, Any]:
        return {"successes": self.successes, "errors": self.errors}


def plan_batch(body: bytes, caller: Caller, attribution: dict[str, str], max_event_bytes: int) -> Planned:
    try:
        request = BATCH_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from None
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"the body must be {{batch: [event, ...]}}: {exc}") from None
    return plan_events([bytes(raw) for raw in request.batch], caller, attribution, max_event_bytes)


def plan_events(events: list[bytes], caller: Caller, attribution: dict[str, str], max_event_bytes: int) -> Planned:
    """Events (each an envelope's JSON, without project) to the messages and per-event results."""
    headers = tuple((name, value.encode()) for name, value in attribution.items() if value)
    planned = Planned()
    for raw in events:
        _plan_event(raw, caller, headers, max_event_bytes, planned)
    return planned


def _plan_event(
    raw: bytes, caller: Caller, headers: tuple[tuple[str, bytes], ...], max_event_bytes: int, planned: Planned
) -> None:
    value = with_project(raw, caller.project_id)
    outcome = parse_event(value, max_event_bytes) if value is not None else Rejected("an event must be an object")
    if value is not None and _names_a_project(raw, outcome, caller.project_id):
        value = with_project(raw, caller.project_id, decode=True)
        outcome = parse_event(value, max_event_bytes)  # type: ignore[arg-type]
    if outcome is None:
        planned.outcomes["sdk_log"] += 1  # Langfuse logs sdk-log events and drops them; they are in neither list
        return
    if isinstance(outcome, IngestionEvent) and outcome.type in EXTENSION_TYPES:
        outcome = Rejected(f"event type {outcome.type!r} is not accepted over HTTP", ReasonKind.UNKNOWN_TYPE)
    if isinstance(outcome, Rejected):
        planned.outcomes["rejected"] += 1
        event_id = _event_id(raw)
        planned.errors.append(
            {"id": event_id, "status": 400, "message": "Invalid request data", "error": outcome.reason}
        )
        planned.letters.append(gateway_letter(value or raw, headers, outcome.reason, outcome.kind, _type_of(value)))
        return
    if caller.scope == SCORES and outcome.type not in SCOPE_TYPES:
        planned.outcomes["scope_denied"] += 1
        planned.errors.append(
            {"id": outcome.event_id, "status": 401, "message": "Authentication error", "error": "Access Scope Denied"}
        )
        return
    key = message_key(outcome.project_id, outcome.entity, outcome.entity_id)
    planned.messages.append(Record(value=value, key=key, headers=headers))  # type: ignore[arg-type]
    planned.successes.append({"id": outcome.event_id, "status": 201})
    planned.outcomes["accepted"] += 1


def _names_a_project(raw: bytes, outcome: IngestionEvent | Rejected | None, project_id: str) -> bool:
    """Whether the event names a project of its own, which the spliced one must replace (a valid event shows it in
    its parsed project: the last key wins; a refused one is checked by its bytes, so that its letter is right)."""
    if isinstance(outcome, IngestionEvent):
        return outcome.project_id != project_id
    return b"project" in raw


def with_project(raw: bytes, project_id: str, decode: bool = False) -> bytes | None:
    """The event's JSON with ``project_id`` set to the caller's; None when it is not a JSON object.

    Spliced in front of the raw bytes (no decode and re-encode): a key the event repeats later would win, so an
    event that names a project itself is decoded instead (``decode``), and the caller's project replaces it."""
    if raw[:1] != b"{":
        return None
    if decode or raw[1:].lstrip()[:1] == b"}":
        document = orjson.loads(raw)
        document["project_id"] = project_id
        return orjson.dumps(document)
    return b'{"project_id":' + orjson.dumps(project_id) + b"," + raw[1:]


def gateway_letter(
    value: bytes, headers: tuple[tuple[str, bytes], ...], reason: str, kind: str, event_type: str
) -> DeadLetter:
    """A dead letter for an event refused at the door. Its origin is the gateway with a random offset, so
    readers, which tell letters apart by origin, keep every one."""
    try:
        key = best_effort_key(orjson.loads(value))
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        key = None
    record = Record(value=value, key=key, headers=headers, topic=GATEWAY_TOPIC, offset=random.getrandbits(62))
    return DeadLetter(record, reason, event_type, kind)


def _event_id(raw: bytes) -> str:
    try:
        event_id = orjson.loads(raw).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"
    return event_id if isinstance(event_id, str) else "unknown"


def _type_of(value: bytes | None) -> str:
    try:
        event_type = orjson.loads(value or b"").get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"
    return event_type if event_type in ENTITY_BY_TYPE else "unknown"  # a metric label: never arbitrary input
