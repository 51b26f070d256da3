"""Object storage: a local folder or an S3 bucket (aioboto3), behind one small interface.

Used by the archive, media, dead-letter, deletion, retention and rebuild code; keys are always
``/``-separated paths relative to the store's root or prefix.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.transforms.validate import iso_utc

# S3 error codes that refuse the object itself (its key or size): retrying the same write cannot succeed.
REFUSED_OBJECT_CODES = frozenset(
    {"InvalidArgument", "InvalidObjectName", "KeyTooLongError", "InvalidURI", "EntityTooLarge", "InvalidRequest"}
)


@dataclass(frozen=True)
class StoredObject:
    size: int
    content_type: str
    last_modified: str  # ISO 8601, UTC


class KeyRefused(ValueError):
    """An object key the store cannot hold (outside its root, say)."""


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> AsyncIterator[str]: ...
    async def head(self, key: str) -> StoredObject | None: ...
    async def close(self) -> None: ...


class LocalStore:
    """A folder: writes go to a temporary file, are fsynced and renamed, so a reader never sees half."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise KeyRefused(f"object key {key!r} escapes the store's folder")
        return path

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def head(self, key: str) -> StoredObject | None:
        try:
            stat = await asyncio.to_thread(self._path(key).stat)
        except FileNotFoundError:
            return None
        return StoredObject(stat.st_size, "application/octet-stream", iso_utc(int(stat.st_mtime * 1000)))

    async def list(self, prefix: str) -> AsyncIterator[str]:
        base = self.root.resolve()
        for path in sorted(base.rglob("*")):
            key = path.relative_to(base).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                yield key

    async def close(self) -> None:
        return None


class S3Store:
    """An S3 bucket through aioboto3; the bucket is created when missing."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str,
        public_endpoint: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.public_endpoint = public_endpoint
        self.prefix = prefix.strip("/")
        self._config: dict[str, Any] = {
            "endpoint_url": endpoint,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": region,
        }
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._url_client: Any = None

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _s3(self) -> Any:
        if self._client is None:
            import aioboto3
            from botocore.config import Config

            session = aioboto3.Session()
            config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)
            self._client = await self._stack.enter_async_context(session.client("s3", config=config, **self._config))
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except self._client.exceptions.ClientError:
                await self._client.create_bucket(Bucket=self.bucket)
        return self._client

    async def put(self, key: str, data: bytes) -> None:
        client = await self._s3()
        await client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    async def get(self, key: str) -> bytes:
        client = await self._s3()
        response = await client.get_object(Bucket=self.bucket, Key=self._full(key))
        async with response["Body"] as body:
            return await body.read()

    async def delete(self, key: str) -> None:
        client = await self._s3()
        await client.delete_object(Bucket=self.bucket, Key=self._full(key))

    async def head(self, key: str) -> StoredObject | None:
        client = await self._s3()
        try:
            found = await client.head_object(Bucket=self.bucket, Key=self._full(key))
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        modified = found["LastModified"].timestamp()
        return StoredObject(found["ContentLength"], found.get("ContentType", ""), iso_utc(int(modified * 1000)))

    async def presigned_url(self, operation: str, key: str, seconds: int, **params: Any) -> str:
        """A URL that lets its holder ``put_object`` or ``get_object`` this key for ``seconds``, signed (SigV4)
        over ``params`` too (content type, length, checksum), so the holder can send nothing else."""
        client = await self._signer()
        params = {"Bucket": self.bucket, "Key": self._full(key), **params}
        return await client.generate_presigned_url(operation, Params=params, ExpiresIn=seconds)

    async def _signer(self) -> Any:
        # Presigned URLs are for clients elsewhere: SigV4 (which signs headers), at the endpoint they can reach.
        if self._url_client is None:
            import aioboto3
            from botocore.config import Config

            config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
            endpoint = self.public_endpoint or self._config["endpoint_url"]
            client = aioboto3.Session().client("s3", config=config, **{**self._config, "endpoint_url": endpoint})
            self._url_client = await self._stack.enter_async_context(client)
        return self._url_client

    async def list(self, prefix: str) -> AsyncIterator[str]:
        client = await self._s3()
        paginator = client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = self._url_client = None


def open_store(
    url: str,
    endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str = "us-east-1",
    public_endpoint: str | None = None,
) -> ObjectStore:
    """``s3://bucket/prefix`` or a folder path; ``public_endpoint``: the S3 endpoint in presigned URLs."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Store(bucket, prefix, endpoint, access_key, secret_key, region, public_endpoint)
    return LocalStore(Path(url))


def is_refused_object(exc: BaseException) -> bool:
    """Whether a store refused this object for good (see ``REFUSED_OBJECT_CODES``), rather than being down."""
    if isinstance(exc, KeyRefused):
        return True
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in REFUSED_OBJECT_CODES
