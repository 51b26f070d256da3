"""The raw archive: each processed batch becomes one record file in a local folder or an S3 bucket.

Object names are derived from the hour of writing and the batch's offset ranges, so re-archiving the same
batch in the same hour overwrites the same object. A batch re-archived later, or cut differently after a
restart, can repeat records of an earlier object; every record carries topic, partition and offset, so
readers drop repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

from pipeline.recordfile import Record, decode_records, encode_records

ARCHIVE_SUFFIX = ".lfr.zst"


def archive_key(records: Sequence[Record], now: float | None = None) -> str:
    """``raw/YYYY/MM/DD/HH/<topic>-<digest of offset ranges>.lfr.zst``, UTC hour of writing."""
    ranges: dict[tuple[str, int], list[int]] = {}
    for record in records:
        ranges.setdefault((record.topic, record.partition), []).append(record.offset)
    digest = hashlib.sha256(
        repr(sorted((tp, min(offsets), max(offsets)) for tp, offsets in ranges.items())).encode()
    ).hexdigest()[:20]
    topic = records[0].topic or "records"
    stamp = time.strftime("%Y/%m/%d/%H", time.gmtime(now))
    return f"raw/{stamp}/{topic}-{digest}{ARCHIVE_SUFFIX}"


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> AsyncIterator[str]: ...
    async def close(self) -> None: ...


class LocalStore:
    """A folder: writes go to a temporary file, are fsynced and renamed, so a reader never sees half."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"object key {key!r} escapes the archive folder")
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
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._config: dict[str, Any] = {
            "endpoint_url": endpoint,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": region,
        }
        self._stack = AsyncExitStack()
        self._client: Any = None

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

    async def list(self, prefix: str) -> AsyncIterator[str]:
        client = await self._s3()
        paginator = client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def open_store(
    url: str,
    endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str = "us-east-1",
) -> ObjectStore:
    """``s3://bucket/prefix`` or a folder path."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Store(bucket, prefix, endpoint, access_key, secret_key, region)
    return LocalStore(Path(url))


class ArchiveSink:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def write_batch(self, records: Sequence[Record]) -> tuple[str, int]:
        """Write one object for the batch; returns its key and size."""
        data = await asyncio.to_thread(encode_records, records)
        key = archive_key(records)
        await self.store.put(key, data)
        return key, len(data)


async def archive_records(store: ObjectStore, prefix: str = "raw/") -> AsyncIterator[Record]:
    """Records of the raw archive in object order, repeats (same topic, partition, offset) dropped."""
    seen: set[tuple[str, int, int]] = set()
    async for key in store.list(prefix):
        for record in decode_records(await store.get(key)):
            position = (record.topic, record.partition, record.offset)
            if position in seen:
                continue
            seen.add(position)
            yield record


def filter_records(data: bytes, keep: Callable[[Record], bool]) -> tuple[bytes | None, int]:
    """An archive object with only the records ``keep`` accepts (None when none are left), and how many
    went; the same bytes when nothing goes."""
    records = list(decode_records(data))
    kept = [record for record in records if keep(record)]
    if len(kept) == len(records):
        return data, 0
    return (encode_records(kept) if kept else None), len(records) - len(kept)


async def rewrite_object(store: ObjectStore, key: str, keep: Callable[[Record], bool]) -> int:
    """Rewrite (or delete, once empty) one archive object without the records ``keep`` rejects; returns how
    many were removed. Decoding and filtering are CPU work, done off the event loop."""
    kept, removed = await asyncio.to_thread(filter_records, await store.get(key), keep)
    if removed:
        await (store.put(key, kept) if kept is not None else store.delete(key))
    return removed
