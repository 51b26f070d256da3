"""The closed vocabularies that validation, the runtime, metrics labels and the CLI share: why a message was
dead-lettered, and what became of an event. Members are strings, so they go into headers, JSON and metric
labels as they are."""

from enum import StrEnum


class ReasonKind(StrEnum):
    """Why a message is a dead letter (the ``lfpipe.reason-kind`` header and the ``reason`` metric label)."""

    TOO_LARGE = "too_large"
    MALFORMED_JSON = "malformed_json"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_BODY = "invalid_body"
    WRONG_KEY = "wrong_key"
    FAILED_SEMANTIC_CHECK = "failed_semantic_check"
    REJECTED_BY_STORE = "rejected_by_store"
    INTERNAL_ERROR = "internal_error"


class Outcome(StrEnum):
    """What became of a consumed message (the ``outcome`` label of ``lfpipe_events_total``)."""

    CONSUMED = "consumed"
    PROCESSED = "processed"
    DEDUPLICATED = "deduplicated"
    DEAD_LETTERED = "dead_lettered"
    SDK_LOG = "sdk_log"


REASON_KINDS = ", ".join(ReasonKind)
