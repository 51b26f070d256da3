"""Media extraction: base64 payloads inside input, output and metadata become content-addressed objects, and
the stored value gets Langfuse's media reference token in their place.

Langfuse's SDKs do this client-side (the server only for OTel), so whatever they miss stays inline in
ClickHouse rows. Here every path is covered:

* data URIs (``data:<mime>;base64,<payload>``) that are a whole string value;
* provider shapes with a separate type field: ``{"type": "base64", "media_type": ..., "data": ...}``
  (Anthropic) and ``{"mime_type": ..., "data": ...}`` (Vertex, Gemini ``inline_data``);
* reference tokens already in the payload (uploaded by an SDK) are recognised and linked, not re-stored.

Ids follow Langfuse: the sha256 of the bytes, as URL-safe base64, cut to 22 characters; identical content
gets the same id and object. A payload whose bytes do not match its declared type (by magic numbers) or do not
decode stays inline: storing it under the wrong type would make it unreadable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

TOKEN = re.compile(r"^@@@langfuseMedia:type=([^|@]+)\|id=([A-Za-z0-9_-]{22})\|source=([a-z0-9_]+)@@@$")
DATA_URI = re.compile(r"^data:([^;,]{1,200})(?:;[^;,]*)*;base64,", re.ASCII)
# What a stored content type may look like: it becomes part of an object key and of a token.
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,62}/[a-z0-9][a-z0-9.+-]{0,126}", re.ASCII)
MAX_DEPTH = 32  # deeper structures are left as they are (Langfuse stops at 10)

# Magic numbers of the types that can be checked cheaply: type -> (offset, bytes) alternatives.
SIGNATURES: dict[str, tuple[tuple[int, bytes], ...]] = {
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/jpg": ((0, b"\xff\xd8\xff"),),
    "image/gif": ((0, b"GIF87a"), (0, b"GIF89a")),
    "image/webp": ((8, b"WEBP"),),
    "application/pdf": ((0, b"%PDF-"),),
    "audio/wav": ((8, b"WAVE"),),
    "audio/x-wav": ((8, b"WAVE"),),
    "audio/mpeg": ((0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2")),
    "audio/mp3": ((0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2")),
    "audio/ogg": ((0, b"OggS"),),
    "audio/flac": ((0, b"fLaC"),),
    "video/mp4": ((4, b"ftyp"),),
}
# Langfuse's media content types and the file extension of each (its MediaContentType and
# getFileExtensionFromContentType): SDK uploads must use one of them, and object keys end in the extension.
MEDIA_CONTENT_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/svg+xml": "svg",
    "image/tiff": "tiff",
    "image/bmp": "bmp",
    "image/avif": "avif",
    "image/heic": "heic",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/oga": "oga",
    "audio/aac": "aac",
    "audio/mp4": "m4a",
    "audio/flac": "flac",
    "audio/opus": "opus",
    "audio/webm": "weba",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/ogg": "ogv",
    "video/mpeg": "mpeg",
    "video/quicktime": "mov",
    "video/x-msvideo": "avi",
    "video/x-matroska": "mkv",
    "text/plain": "txt",
    "text/html": "html",
    "text/css": "css",
    "text/csv": "csv",
    "text/markdown": "md",
    "text/x-python": "py",
    "application/javascript": "js",
    "text/x-typescript": "ts",
    "application/x-yaml": "yaml",
    "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/zip": "zip",
    "application/json": "json",
    "application/xml": "xml",
    "application/octet-stream": "bin",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/rtf": "rtf",
    "application/x-ndjson": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/gzip": "gz",
    "application/x-tar": "tar",
    "application/x-7z-compressed": "7z",
}
OTHER_EXTENSIONS = {"audio/x-wav": "wav"}  # types payloads carry that Langfuse's table lacks


def content_address(content: bytes) -> tuple[str, str]:
    """(media id, sha256): Langfuse's id is the URL-safe base64 digest cut to 22 characters; the hash is
    kept whole, in standard base64 (44 characters)."""
    digest = hashlib.sha256(content).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22], base64.b64encode(digest).decode()


def media_id_of_hash(sha256_base64: str) -> str:
    """The media id of a file announced by its standard-base64 sha256 (as SDKs announce uploads)."""
    return base64.urlsafe_b64encode(base64.b64decode(sha256_base64)).decode()[:22]


def media_object_key(project_id: str, media_id: str, content_type: str) -> str:
    """Where a media object lives in object storage (Langfuse's layout: <project>/<id>.<ext>), whether the worker
    extracted it or an SDK uploaded it through the gateway: identical content is one object."""
    return f"media/{project_id}/{media_id}.{extension(content_type)}"


def token(content_type: str, identifier: str, source: str) -> str:
    return f"@@@langfuseMedia:type={content_type}|id={identifier}|source={source}@@@"


def extension(content_type: str) -> str:
    known = MEDIA_CONTENT_TYPES.get(content_type) or OTHER_EXTENSIONS.get(content_type)
    if known:
        return known
    subtype = content_type.rsplit("/", 1)[-1].split("+")[0]
    return subtype if subtype.isalnum() and len(subtype) <= 10 else "bin"


def matches_declared_type(content_type: str, content: bytes) -> bool:
    """True when the bytes carry the declared type's magic number, or the type has none we can check."""
    signatures = SIGNATURES.get(content_type.lower())
    return signatures is None or any(content[offset : offset + len(magic)] == magic for offset, magic in signatures)


@dataclass(frozen=True, slots=True)
class MediaObject:
    media_id: str
    sha256: str  # standard base64 of the digest, 44 characters, as Langfuse stores it
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class MediaReference:
    """A token in a stored value: which media, of what type, found in which field."""

    media_id: str
    content_type: str
    field: str  # input, output or metadata


@dataclass
class Extraction:
    objects: list[MediaObject] = field(default_factory=list)
    references: list[MediaReference] = field(default_factory=list)
    kept_inline: int = 0  # payloads above the size threshold left as they were: undecodable, mistyped, too large


@dataclass(frozen=True, slots=True)
class Limits:
    min_bytes: int = 1024  # smaller payloads cost less inline than as an object and a reference
    max_bytes: int = 50_000_000


MEDIA_FIELDS = ("input", "output", "metadata")
MEDIA_MARK = b"@@@langfuseMedia:"
Body = TypeVar("Body", bound=msgspec.Struct)


def may_hold_media(raw: bytes) -> bool:
    """A cheap test on the raw message first: most events carry neither base64 nor media tokens."""
    return b";base64," in raw or b'"data"' in raw or MEDIA_MARK in raw


def extract_from_body(body: Body, limits: Limits) -> tuple[Body, Extraction | None]:
    """A new body with every extractable payload of its input, output and metadata replaced by a token, and
    what was found; the body itself is left as it was. ``(body, None)`` when there is nothing to extract."""
    found = Extraction()
    changes = {}
    for field_name in MEDIA_FIELDS:
        value = getattr(body, field_name, msgspec.UNSET)
        if value is not msgspec.UNSET and value is not None:
            changes[field_name] = extract(value, field_name, limits, found)
    if not (found.references or found.kept_inline):
        return body, None
    return msgspec.structs.replace(body, **changes), found


def extract(value: Any, field_name: str, limits: Limits, found: Extraction) -> Any:
    """``value`` with every extractable payload replaced by a token; what was found is added to ``found``."""
    return _walk(value, field_name, limits, found, 0)


def _walk(value: Any, field_name: str, limits: Limits, found: Extraction, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, str):
        return _from_string(value, field_name, limits, found)
    if isinstance(value, list):
        return [_walk(item, field_name, limits, found, depth + 1) for item in value]
    if isinstance(value, dict):
        replaced = _from_provider_shape(value, field_name, limits, found)
        if replaced is not None:
            return replaced
        return {key: _walk(item, field_name, limits, found, depth + 1) for key, item in value.items()}
    return value


def _from_string(value: str, field_name: str, limits: Limits, found: Extraction) -> str:
    if value.startswith("@@@langfuseMedia:"):
        if reference := TOKEN.match(value):
            found.references.append(MediaReference(reference.group(2), reference.group(1), field_name))
        return value
    if not value.startswith("data:") or (header := DATA_URI.match(value)) is None:
        return value
    stored = _store(header.group(1), value[header.end() :], "base64_data_uri", field_name, limits, found)
    return stored or value


def _from_provider_shape(value: dict[str, Any], field_name: str, limits: Limits, found: Extraction) -> Any:
    data = value.get("data")
    if not isinstance(data, str):
        return None
    if value.get("type") == "base64" and isinstance(value.get("media_type"), str):
        content_type = value["media_type"]
    elif isinstance(value.get("mime_type"), str):
        content_type = value["mime_type"]
    elif isinstance(value.get("mimeType"), str):
        content_type = value["mimeType"]
    else:
        return None
    stored = _store(content_type, data, "base64_data_uri", field_name, limits, found)
    return None if stored is None else {**value, "data": stored}


def _store(
    content_type: str, encoded: str, source: str, field_name: str, limits: Limits, found: Extraction
) -> str | None:
    """The token for a base64 payload, recording the object; None (keep inline) when it does not qualify."""
    if len(encoded) * 3 // 4 < limits.min_bytes:
        return None
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        found.kept_inline += 1
        return None
    content_type = content_type.strip().lower()
    if (
        len(content) > limits.max_bytes
        or not CONTENT_TYPE.fullmatch(content_type)
        or not matches_declared_type(content_type, content)
    ):
        found.kept_inline += 1
        return None
    identifier, sha256 = content_address(content)
    found.objects.append(MediaObject(identifier, sha256, content_type, content))
    found.references.append(MediaReference(identifier, content_type, field_name))
    return token(content_type, identifier, source)
