"""A processed batch: what its sinks write (rows, clocks, media, archive, deletions, dead letters) and what
they need to trace a refused row back to the messages that made it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.outcomes import Outcome, ReasonKind
from pipeline.recordfile import Record
from pipeline.transforms.dedup import EventKey
from pipeline.transforms.deletion import TraceDeletion
from pipeline.transforms.events import MediaUploadBody
from pipeline.transforms.media import Extraction, MediaObject, media_object_key

EntityKey = tuple[str, str, str]  # (entity, project id, entity id)
MediaKey = tuple[str, str]  # (project id, media id)
StoredState = tuple[dict[str, Any], dict[str, Any]]


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    record: Record
    reason: str
    event_type: str = "unknown"
    kind: ReasonKind = ReasonKind.INVALID_BODY


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
    tokenizer_seconds: float = 0.0  # what enrichment spent counting tokens
    # The messages merged into each entity by this batch, with their event ids.
    sources: dict[EntityKey, list[tuple[Record, EventKey, str]]] = field(default_factory=dict)
    # Every entity the batch named (pinned in memory while the batch is in flight).
    entities: set[EntityKey] = field(default_factory=set)
    now_ms: int = 0  # when the batch was processed: rows' updated_at and event_ts
    refused_ids: set[EventKey] = field(default_factory=set)  # events that became dead letters after merging

    def add_row(self, table: str, owner: EntityKey, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)
        self.row_owners.setdefault(table, []).append(owner)


def refuse(
    out: BatchOutput, refused: dict[EntityKey, str], kind: ReasonKind = ReasonKind.REJECTED_BY_STORE
) -> list[DeadLetter]:
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
    out.counts[Outcome.DEAD_LETTERED] = len(out.dead_letters)
    out.counts[Outcome.PROCESSED] -= len(letters)
    return letters


def add_media(out: BatchOutput, owner: EntityKey, found: Extraction, trace_id: str, now_ms: int) -> None:
    """Objects to store (once per project and id) and one link row per reference, for ``owner``'s event."""
    entity, project_id, entity_id = owner
    observation_id = entity_id if entity == "observation" else ""
    objects = {media.media_id: media for media in found.objects}
    for media in objects.values():
        out.media.setdefault((project_id, media.media_id), media)
        out.media_owners.setdefault((project_id, media.media_id), set()).add(owner)
    out.media_kept_inline += found.kept_inline
    for reference in found.references:
        stored = objects.get(reference.media_id)
        row = {
            "project_id": project_id,
            "media_id": reference.media_id,
            "trace_id": trace_id,
            "observation_id": observation_id,
            "field": reference.field,
            "content_type": reference.content_type,
            "sha_256_hash": stored.sha256 if stored else "",
            "content_length": len(stored.content) if stored else 0,
            "bucket_path": media_object_key(project_id, stored.media_id, stored.content_type) if stored else "",
            # A token whose object this batch did not store (an SDK uploaded it) says less than a complete row of
            # the same link, from an extraction or a gateway upload: the lowest version lets those replace it.
            "event_ts": now_ms if stored else 0,
        }
        out.add_row("media", owner, row)


def add_media_upload(out: BatchOutput, owner: EntityKey, body: MediaUploadBody, now_ms: int) -> None:
    """The link row for a file an SDK uploaded through the gateway: complete, like an extracted object's."""
    project_id, media_id = owner[1], owner[2]
    row = {
        "project_id": project_id,
        "media_id": media_id,
        "trace_id": body.traceId,
        "observation_id": body.observationId or "",
        "field": body.field,
        "content_type": body.contentType,
        "sha_256_hash": body.sha256Hash,
        "content_length": body.contentLength,
        "bucket_path": media_object_key(project_id, media_id, body.contentType),
        "event_ts": now_ms,
    }
    out.add_row("media", owner, row)
