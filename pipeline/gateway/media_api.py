"""``/api/public/media``, the pure part: Langfuse's upload request checked, and what it turns into.

An SDK announces a file (trace, field, content type, length, sha256) and gets a presigned PUT URL for it. The
media id is Langfuse's (``transforms/media.content_address``: the URL-safe base64 sha256 cut to 22
characters), computed from the announced hash, so the SDK's own id matches and identical content is one
object: the same key the worker's media extraction writes (``media_object_key``). The URL signs the content
type, the length and the sha256, so the store accepts only the announced bytes.

The link between the file and its trace or observation reaches the worker as an lfpipe ``media-upload`` event
on the ingestion topic, which becomes a complete row of the ``media`` table.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Any, Literal

import msgspec

from pipeline.transforms.media import MEDIA_CONTENT_TYPES, media_object_key

SHA256_BASE64 = re.compile(r"[A-Za-z0-9+/=]{44}")
EVENT_NAMESPACE = uuid.UUID("1f4c6a52-4a0e-4f9e-9d0a-6f1a2b8c9d10")  # media-upload event ids (uuid5)


class UploadRequest(msgspec.Struct):
    traceId: str
    contentType: str
    contentLength: int
    sha256Hash: str
    field: Literal["input", "output", "metadata"]
    observationId: str | None = None


class UploadPatch(msgspec.Struct):
    uploadedAt: str
    uploadHttpStatus: int
    uploadHttpError: str | None = None
    uploadTimeMs: float | None = None


class InvalidMedia(Exception):
    """400 with a reason."""


def media_id_of(sha256_hash: str) -> str:
    return base64.urlsafe_b64encode(base64.b64decode(sha256_hash)).decode()[:22]


def check_upload(body: bytes, max_length: int) -> UploadRequest:
    try:
        request = msgspec.json.decode(body, type=UploadRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if b'"datasetId"' in body and msgspec.json.decode(body).get("datasetId") is not None:
            raise InvalidMedia("media of dataset items is not supported by lfpipe") from None
        raise InvalidMedia(f"Invalid request data: {exc}") from None
    if request.contentType not in MEDIA_CONTENT_TYPES:
        raise InvalidMedia(f"Invalid content type. Only supporting {', '.join(MEDIA_CONTENT_TYPES)}")
    if not 0 < request.contentLength <= max_length:
        raise InvalidMedia(f"contentLength must be between 1 and {max_length} bytes")
    if not SHA256_BASE64.fullmatch(request.sha256Hash) or not _is_digest(request.sha256Hash):
        raise InvalidMedia("Must be a 44 character base64 encoded SHA-256 hash")
    if not request.traceId or (request.observationId is not None and not request.observationId):
        raise InvalidMedia("traceId (and observationId when given) must not be empty")
    return request


def _is_digest(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def object_key(project_id: str, request: UploadRequest) -> str:
    return media_object_key(project_id, media_id_of(request.sha256Hash), request.contentType)


def upload_event(project_id: str, request: UploadRequest, timestamp: str) -> dict[str, Any]:
    """The ``media-upload`` event linking the file to its trace or observation field. Its id depends only on
    the link, so announcing the same file for the same field twice is one event to the worker's dedup."""
    media_id = media_id_of(request.sha256Hash)
    link = "\x00".join((project_id, media_id, request.traceId, request.observationId or "", request.field))
    return {
        "id": str(uuid.uuid5(EVENT_NAMESPACE, link)),
        "timestamp": timestamp,
        "type": "media-upload",
        "project_id": project_id,
        "body": {
            "id": media_id,
            "traceId": request.traceId,
            "observationId": request.observationId,
            "field": request.field,
            "contentType": request.contentType,
            "contentLength": request.contentLength,
            "sha256Hash": request.sha256Hash,
        },
    }


def check_patch(body: bytes) -> UploadPatch:
    try:
        return msgspec.json.decode(body, type=UploadPatch)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidMedia(f"Invalid request data: {exc}") from None
