"""The one record format for the raw archive, load-test recordings and dead-letter dumps.

A ``.lfr.zst`` file is a zstd stream of: the magic ``LFR1\\n``, then per record a 4-byte big-endian length
and a JSON header (topic, partition, offset, timestamp ms, key and headers in base64), then a 4-byte length
and the value bytes, untouched. Values stay raw so a replay sends exactly what the producer sent.
"""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import msgspec
import orjson
import zstandard

MAGIC = b"LFR1\n"
_LENGTH = struct.Struct(">I")


class Record(msgspec.Struct, frozen=True, gc=False):
    value: bytes
    key: bytes | None = None
    timestamp_ms: int = 0
    topic: str = ""
    partition: int = -1
    offset: int = -1
    headers: tuple[tuple[str, bytes], ...] = ()


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def encode_records(records: Iterable[Record], level: int = 3) -> bytes:
    """A whole record file in memory: the parts joined, then compressed in one call (one zstd frame), which
    costs far less per record than feeding a stream writer four small writes each."""
    parts = [MAGIC]
    for record in records:
        header = _header(record)
        parts += (_LENGTH.pack(len(header)), header, _LENGTH.pack(len(record.value)), record.value)
    return zstandard.ZstdCompressor(level=level).compress(b"".join(parts))


def _header(record: Record) -> bytes:
    return orjson.dumps(
        {
            "t": record.topic,
            "p": record.partition,
            "o": record.offset,
            "ts": record.timestamp_ms,
            "k": _b64(record.key),
            "h": [[name, _b64(value)] for name, value in record.headers],
        }
    )


class RecordWriter:
    """Streams records into ``sink``: ``with RecordWriter(handle) as writer: writer.write(record)``."""

    def __init__(self, sink: BinaryIO, level: int = 3) -> None:
        self._out = zstandard.ZstdCompressor(level=level).stream_writer(sink, closefd=False)
        self._out.write(MAGIC)
        self.count = 0

    def write(self, record: Record) -> None:
        header = _header(record)  # the framing of encode_records, written as a stream
        self._out.write(_LENGTH.pack(len(header)))
        self._out.write(header)
        self._out.write(_LENGTH.pack(len(record.value)))
        self._out.write(record.value)
        self.count += 1

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.close()


def write_records(sink: BinaryIO, records: Iterable[Record], level: int = 3) -> int:
    """Stream records into ``sink``; returns how many were written."""
    with RecordWriter(sink, level) as writer:
        for record in records:
            writer.write(record)
    return writer.count


def read_records(source: BinaryIO) -> Iterator[Record]:
    """Stream records back; a truncated tail (a crashed writer) ends the stream with an error."""
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    if _read_exact(reader, len(MAGIC)) != MAGIC:
        raise ValueError("not an LFR1 record file")
    while True:
        prefix = reader.read(_LENGTH.size)
        if not prefix:
            return
        header = orjson.loads(_read_exact(reader, _LENGTH.unpack(prefix)[0]))
        value = _read_exact(reader, _LENGTH.unpack(_read_exact(reader, _LENGTH.size))[0])
        key = header.get("k")
        yield Record(
            value=value,
            key=None if key is None else base64.b64decode(key),
            timestamp_ms=header.get("ts", 0),
            topic=header.get("t", ""),
            partition=header.get("p", -1),
            offset=header.get("o", -1),
            headers=tuple((name, base64.b64decode(raw or "")) for name, raw in header.get("h", [])),
        )


def decode_records(data: bytes) -> list[Record]:
    return list(read_records(io.BytesIO(data)))


def _read_exact(reader: BinaryIO, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = reader.read(remaining)
        if not chunk:
            raise ValueError("record file ends in the middle of a record")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
