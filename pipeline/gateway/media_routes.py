"""``/api/public/media``: SDK uploads of multimodal files, by presigned URL straight into object storage.

``POST`` announces a file and answers ``{uploadUrl, mediaId}`` (``uploadUrl`` null when the object is already
stored) after the link event is in Kafka; ``PATCH /{id}`` takes the SDK's upload report; ``GET /{id}``
describes a stored file with a download URL. Presigned URLs need an S3 store: with a local archive folder the
media endpoints answer 501.
"""

from __future__ import annotations

import logging
import re
import time

import orjson
from aiohttp import web

from pipeline.gateway import metrics
from pipeline.gateway.app import GATEWAY, Gateway, Refusal, attribution, json_response, now_iso, read_body
from pipeline.gateway.auth import ALL
from pipeline.gateway.media_api import InvalidMedia, check_patch, check_upload, media_id_of, object_key, upload_event
from pipeline.recordfile import Record
from pipeline.stores.objects import S3Store
from pipeline.transforms.events import message_key
from pipeline.transforms.validate import iso_utc

log = logging.getLogger("lfpipe.gateway")
MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{22}")
SMALL_BODY = 1_048_576


def _s3(gateway: Gateway) -> S3Store:
    if not isinstance(gateway.store, S3Store):
        message = "media uploads need S3 object storage (LFPIPE_ARCHIVE_URL=s3://bucket/prefix)"
        raise Refusal(501, {"message": message, "error": "NotImplemented"}, "media_needs_s3")
    return gateway.store


def _invalid(exc: InvalidMedia) -> Refusal:
    return Refusal(400, {"message": "Invalid request data", "error": str(exc)}, "malformed_body")


async def announce(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request, ALL)
    body = await read_body(request, SMALL_BODY)
    try:
        upload = check_upload(body, gateway.settings.media_upload_max_bytes)
    except InvalidMedia as exc:
        raise _invalid(exc) from None
    store = _s3(gateway)
    key = object_key(caller.project_id, upload)
    stored = await store.head(key)
    upload_url = None
    if stored is None or stored.size != upload.contentLength:
        upload_url = await store.presigned_url(
            "put_object",
            key,
            gateway.settings.media_url_seconds,
            ContentType=upload.contentType,
            ContentLength=upload.contentLength,
            ChecksumSHA256=upload.sha256Hash,  # the store refuses bytes that are not the announced file
        )
    media_id = media_id_of(upload.sha256Hash)
    event = upload_event(caller.project_id, upload, now_iso())
    headers = tuple((name, value.encode()) for name, value in attribution(request, caller).items() if value)
    link = Record(orjson.dumps(event), message_key(caller.project_id, "media_upload", media_id), headers=headers)
    await gateway.deliver([link])
    return json_response({"uploadUrl": upload_url, "mediaId": media_id}, 201)


async def report(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request, ALL)
    media_id = _media_id(request)
    try:
        patch = check_patch(await read_body(request, SMALL_BODY))
    except InvalidMedia as exc:
        raise _invalid(exc) from None
    if 200 <= patch.uploadHttpStatus < 300:
        metrics.MEDIA_UPLOADS.labels("uploaded").inc()
    else:
        metrics.MEDIA_UPLOADS.labels("failed").inc()
        log.warning(
            "upload of media %s (project %s, key %s) failed: HTTP %s %s",
            media_id,
            caller.project_id,
            caller.public_key,
            patch.uploadHttpStatus,
            (patch.uploadHttpError or "")[:500],
        )
    return json_response({"message": "OK"})


async def fetch(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    caller = gateway.caller(request, ALL)
    media_id = _media_id(request)
    store = _s3(gateway)
    # The key's extension depends on the content type, which the id does not tell: look for the one object.
    keys = [key async for key in store.list(f"media/{caller.project_id}/{media_id}.")]
    stored = await store.head(keys[0]) if keys else None
    if stored is None:
        raise _not_found(media_id)
    seconds = gateway.settings.media_url_seconds
    url = await store.presigned_url("get_object", keys[0], seconds)
    expiry = iso_utc(int((time.time() + seconds) * 1000))
    return json_response(
        {
            "mediaId": media_id,
            "contentType": stored.content_type,
            "contentLength": stored.size,
            "uploadedAt": stored.last_modified,
            "url": url,
            "urlExpiry": expiry,
        }
    )


def _media_id(request: web.Request) -> str:
    media_id = request.match_info["media_id"]
    if not MEDIA_ID.fullmatch(media_id):
        raise _not_found(media_id[:40])
    return media_id


def _not_found(media_id: str) -> Refusal:
    return Refusal(404, {"message": f"Media asset {media_id} not found", "error": "LangfuseNotFoundError"}, "not_found")
