"""Prometheus metrics of a worker (served on its ``/metrics``). Names follow Prometheus conventions: a unit
suffix, ``_total`` for counters; label values come from small fixed sets, never from message content."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class BatchHistogram(Collector):
    """A histogram fed a whole batch at once: one value per event, where ``Histogram.observe`` would cost a lock
    and a walk over the buckets for each (6% of a worker's CPU). Exposed like any Prometheus histogram."""

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(float(bound) for bound in buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts = [0] * len(self.counts)
        total = 0.0
        bounds = self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # a value equal to a bound belongs to that bucket (le)
            total += value
        with self._lock:
            self.counts = [mine + new for mine, new in zip(self.counts, counts, strict=True)]
            self.total += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self.counts), self.total
        cumulative, buckets = 0, []
        for bound, count in zip([*(repr(b) for b in self.bounds), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


EVENTS = Counter(
    "lfpipe_events_total",
    "Ingestion events by outcome: consumed, processed, deduplicated, dead_lettered, sdk_log",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "lfpipe_dead_letters_total", "Dead-lettered messages by event type and reason kind", ["event_type", "reason"]
)
BATCH_SIZE = Histogram(
    "lfpipe_batch_events", "Events per processed batch", buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000)
)
PROCESS_SECONDS = Histogram(
    "lfpipe_batch_process_seconds",
    "Time to read stored state, merge, enrich and build rows for one batch (its messages are validated as they arrive)",
)
TOKENIZER_SECONDS = Counter("lfpipe_tokenizer_seconds_total", "Time spent counting tokens for usage")
MODEL_MATCH_MISSES = Counter(
    "lfpipe_model_match_misses_total", "Observation rows naming a model that no model definition matches"
)
ROWS_WRITTEN = Counter("lfpipe_clickhouse_rows_total", "Rows inserted into ClickHouse", ["table"])
INSERT_BYTES = Counter("lfpipe_clickhouse_written_bytes_total", "Bytes ClickHouse reports written by inserts")
INSERT_SECONDS = Histogram("lfpipe_clickhouse_insert_seconds", "ClickHouse insert latency per batch")
SINK_ERRORS = Counter(
    "lfpipe_sink_errors_total",
    "Failed attempts (retried): clickhouse, clickhouse-read, archive, media, deletion, dead-letter topic, kafka-commit",
    ["sink"],
)
STORE_REFUSALS = Counter(
    "lfpipe_store_refused_entities_total",
    "Entities whose data a store refused for good (their events are dead-lettered as rejected_by_store)",
    ["sink"],
)
ARCHIVE_OBJECTS = Counter("lfpipe_archive_objects_total", "Archive objects written")
ARCHIVE_BYTES = Counter("lfpipe_archive_bytes_total", "Archive bytes written (compressed)")
ARCHIVE_SECONDS = Histogram("lfpipe_archive_write_seconds", "Archive write latency per batch")
MEDIA_OBJECTS = Counter("lfpipe_media_objects_total", "Media objects written to object storage")
MEDIA_BYTES = Counter("lfpipe_media_bytes_total", "Media bytes written to object storage")
MEDIA_SECONDS = Histogram("lfpipe_media_write_seconds", "Media object write latency")
MEDIA_KEPT_INLINE = Counter(
    "lfpipe_media_kept_inline_total", "Base64 payloads left inline: undecodable, not their declared type, too large"
)
TRACES_DELETED = Counter("lfpipe_traces_deleted_total", "Traces deleted by trace-delete events")
STATE_ENTITIES = Gauge("lfpipe_merge_state_entities", "Entities held in the in-memory merge state")
DEDUP_IDS = Gauge("lfpipe_dedup_ids", "Event ids remembered for deduplication")
ASSIGNED_PARTITIONS = Gauge("lfpipe_assigned_partitions", "Ingestion partitions assigned to this worker")
CONSUMER_LAG = Gauge(
    "lfpipe_consumer_lag_messages",
    "Messages not yet committed by the group, per assigned partition (sampled every few seconds)",
    ["partition"],
)
END_TO_END_SECONDS = BatchHistogram(
    "lfpipe_end_to_end_seconds",
    "Message timestamp (produce time) to durable in ClickHouse and the archive",
    (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 30, 60),
)
