"""What a worker did, for its metrics and for the summary it writes when it exits."""

from __future__ import annotations

import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline import metrics
from pipeline.outcomes import Outcome
from pipeline.recordfile import Record
from pipeline.runtime.batch import BatchOutput

LATENCY_SAMPLES = 200_000
OUTCOMES = tuple(Outcome)


@dataclass
class RunStats:
    counts: Counter[str] = field(default_factory=Counter)
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    # End-to-end latencies (message timestamp to durable), a uniform sample of at most LATENCY_SAMPLES.
    latencies: list[float] = field(default_factory=list)
    latency_count: int = 0
    # Seconds per stage (processing phases, checkpoint steps), summed over the run.
    stage_seconds: Counter[str] = field(default_factory=Counter)

    def batch_started(self) -> None:
        self.first_batch_at = self.first_batch_at or time.monotonic()

    def batch_durable(self, records: list[Record], out: BatchOutput, durable_ms: float) -> None:
        self.last_batch_at = time.monotonic()
        self.counts.update(out.counts)
        metrics.MEDIA_KEPT_INLINE.inc(out.media_kept_inline)
        for outcome in OUTCOMES:
            metrics.EVENTS.labels(outcome).inc(out.counts[outcome])
        for letter in out.dead_letters:
            metrics.DEAD_LETTERS.labels(letter.event_type, letter.kind).inc()
        metrics.BATCH_SIZE.observe(out.counts[Outcome.CONSUMED])
        misses = sum(
            1
            for row in out.rows.get("observations", ())
            if row.get("provided_model_name") and not row.get("internal_model_id") and not row.get("is_deleted")
        )
        metrics.MODEL_MATCH_MISSES.inc(misses)
        metrics.TOKENIZER_SECONDS.inc(out.tokenizer_seconds)
        self._observe_latencies(records, durable_ms)

    def _observe_latencies(self, records: list[Record], durable_ms: float) -> None:
        latencies = [max(0.0, (durable_ms - record.timestamp_ms) / 1000) for record in records]
        metrics.END_TO_END_SECONDS.observe_many(latencies)
        for seconds in latencies:
            self.latency_count += 1
            if len(self.latencies) < LATENCY_SAMPLES:
                self.latencies.append(seconds)
            elif (slot := random.randrange(self.latency_count)) < LATENCY_SAMPLES:
                self.latencies[slot] = seconds

    def summary(self) -> dict[str, Any]:
        elapsed = (self.last_batch_at or 0) - (self.first_batch_at or 0)
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4) if ordered else None

        return {
            **{str(outcome): count for outcome, count in self.counts.items()},  # JSON keys: plain strings
            "seconds": round(elapsed, 3) if self.last_batch_at else 0.0,
            "events_per_second": round(self.counts[Outcome.CONSUMED] / elapsed, 1) if elapsed > 0 else None,
            "latency_p50_seconds": percentile(0.50),
            "latency_p99_seconds": percentile(0.99),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "stage_us_per_event": {
                stage: round(seconds * 1e6 / self.counts[Outcome.CONSUMED], 1)
                for stage, seconds in sorted(self.stage_seconds.items())
                if self.counts[Outcome.CONSUMED]
            },
        }
