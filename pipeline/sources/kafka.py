"""The Faust app and its topics."""

from __future__ import annotations

from typing import Any

import faust

from pipeline.config import Settings
from pipeline.recordfile import Record


def make_app(settings: Settings, bootstrap: str, web_port: int) -> faust.App:
    return faust.App(
        settings.consumer_group,
        broker=f"kafka://{bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        datadir=str((settings.stack_dir / "faust").resolve()),
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Never wait for un-acked events at shutdown or rebalance: an in-flight batch whose sinks are down
        # would block forever; left un-acked, it is simply consumed again (merges are idempotent).
        stream_wait_empty=False,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 5),
        broker_max_poll_records=settings.batch_max_events,
        stream_buffer_maxsize=max(4096, settings.batch_max_events * 2),
        producer_acks=-1,
        producer_compression_type="zstd",
        producer_max_request_size=6_000_000,
        consumer_max_fetch_size=8 * 1024 * 1024,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=web_port,
        web_in_thread=False,
    )


def ingestion_topic(app: faust.App, settings: Settings) -> Any:
    return app.topic(settings.topic("ingestion"), key_type=bytes, value_type=bytes)


def to_record(event: Any) -> Record:
    """A Faust event to the pipeline's record (the archive keeps exactly this)."""
    message = event.message
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    return Record(
        value=message.value or b"",
        key=message.key,
        timestamp_ms=int(message.timestamp * 1000),
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        headers=tuple((str(name), bytes(value or b"")) for name, value in headers),
    )
