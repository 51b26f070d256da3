"""Prometheus metrics of a worker (served on its ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("lfpipe_events_total", "Ingestion events by outcome", ["outcome"])
DEAD_LETTERS = Counter("lfpipe_dead_letters_total", "Dead-lettered messages by event type", ["event_type"])
BATCH_SIZE = Histogram(
    "lfpipe_batch_events", "Events per processed batch", buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000)
)
ROWS_WRITTEN = Counter("lfpipe_clickhouse_rows_total", "Rows inserted into ClickHouse", ["table"])
INSERT_SECONDS = Histogram("lfpipe_clickhouse_insert_seconds", "ClickHouse insert latency per batch")
SINK_ERRORS = Counter("lfpipe_sink_errors_total", "Failed sink attempts (retried)", ["sink"])
ARCHIVE_OBJECTS = Counter("lfpipe_archive_objects_total", "Archive objects written")
ARCHIVE_BYTES = Counter("lfpipe_archive_bytes_total", "Archive bytes written")
ARCHIVE_SECONDS = Histogram("lfpipe_archive_write_seconds", "Archive write latency per batch")
STATE_ENTITIES = Gauge("lfpipe_merge_state_entities", "Entities held in the in-memory merge state")
END_TO_END_SECONDS = Histogram(
    "lfpipe_end_to_end_seconds",
    "Message timestamp (produce time) to durable in ClickHouse and the archive",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 30, 60),
)
