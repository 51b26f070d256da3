"""Dead letters to the dead-letter topic: the original key, value and headers, plus lfpipe's headers saying why
and where the message came from.

A letter must always be sendable, whatever the message carried: what is too large for a Kafka message goes to
object storage (the value alone, or, when the key or headers are too large, the whole message as a one-record
file), and the letter keeps the value's head, says what was moved (``lfpipe.spilled``) and where
(``lfpipe.payload-object``).
``lfpipe dead-letters replay`` puts the original back together.
"""

from __future__ import annotations

import asyncio
import hashlib

from aiokafka import AIOKafkaProducer

from pipeline.recordfile import Record, encode_records
from pipeline.runtime.batch import BatchOutput, DeadLetter
from pipeline.sinks.base import Refused
from pipeline.stores.objects import ObjectStore

REASON = "lfpipe.reason"
REASON_KIND = "lfpipe.reason-kind"
ORIGIN_TOPIC = "lfpipe.topic"
ORIGIN_PARTITION = "lfpipe.partition"
ORIGIN_OFFSET = "lfpipe.offset"
PAYLOAD_OBJECT = "lfpipe.payload-object"
SPILLED = "lfpipe.spilled"
HEADER_PREFIX = "lfpipe."

INLINE_VALUE_BYTES = 1_000_000
INLINE_KEY_BYTES = 16_384
INLINE_HEADER_BYTES = 16_384
MAX_REASON_BYTES = 4096


def letter_message(letter: DeadLetter, spilled_to: str | None) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of the letter's Kafka message; with ``spilled_to``, what does not fit is cut."""
    record = letter.record
    key, value, headers = record.key, record.value, list(record.headers)
    ours = [
        (REASON, letter.reason.encode(errors="replace")[:MAX_REASON_BYTES]),
        (REASON_KIND, letter.kind.encode()),
        (ORIGIN_TOPIC, record.topic.encode()),
        (ORIGIN_PARTITION, str(record.partition).encode()),
        (ORIGIN_OFFSET, str(record.offset).encode()),
    ]
    if spilled_to is None:
        return key, value, headers + ours
    spilled = [part for part, fits in _fits(record).items() if not fits]
    if "key" in spilled:
        key = (key or b"")[:INLINE_KEY_BYTES]
    if "headers" in spilled:
        headers = []
    ours += [(PAYLOAD_OBJECT, spilled_to.encode()), (SPILLED, ",".join(spilled).encode())]
    return key, value[:INLINE_VALUE_BYTES], headers + ours


def _fits(record: Record) -> dict[str, bool]:
    header_bytes = sum(len(name) + len(value) for name, value in record.headers)
    return {
        "value": len(record.value) <= INLINE_VALUE_BYTES,
        "key": len(record.key or b"") <= INLINE_KEY_BYTES,
        "headers": header_bytes <= INLINE_HEADER_BYTES,
    }


def fits_inline(record: Record) -> bool:
    """Whether the letter can carry the whole message (else part of it goes to object storage)."""
    return all(_fits(record).values())


def spilled_object(record: Record) -> tuple[str, bytes]:
    """Key and content of the object that keeps what does not fit: the value alone as raw bytes when only the
    value is too large, else the whole message as a one-record file."""
    fits = _fits(record)
    if fits["key"] and fits["headers"]:
        return f"dead-letters/{hashlib.sha256(record.value).hexdigest()}.bin", record.value
    digest = hashlib.sha256()
    for part in (record.key or b"", record.value, *(value for _, value in record.headers)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    whole = Record(value=record.value, key=record.key, headers=record.headers)
    return f"dead-letters/{digest.hexdigest()}.lfr.zst", encode_records([whole])


class DeadLetterSink:
    name = "dead-letter topic"

    def __init__(self, bootstrap: str, topic: str, store: ObjectStore) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self.producer: AIOKafkaProducer

    async def start(self) -> None:
        self.producer = dead_letter_producer(self.bootstrap)  # made in the running loop: aiokafka binds to it
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def write(self, out: BatchOutput) -> Refused:
        pending = []
        for letter in out.dead_letters:
            spilled_to = None
            if not fits_inline(letter.record):
                spilled_to, content = await asyncio.to_thread(spilled_object, letter.record)
                await self.store.put(spilled_to, content)
            key, value, headers = letter_message(letter, spilled_to)
            pending.append(await self.producer.send(self.topic, value, key=key, headers=headers))
        await asyncio.gather(*pending)
        return {}


def dead_letter_producer(bootstrap: str) -> AIOKafkaProducer:
    """Acknowledged by every in-sync replica. A retried batch may send a letter twice; readers tell letters
    apart by the original partition and offset they carry."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="zstd",
        max_request_size=6_000_000,
        linger_ms=5,
    )
