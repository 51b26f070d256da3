"""The batch-fed latency histogram exposes exactly what prometheus_client's own ``Histogram`` would for the same
values (the reference), including values equal to a bucket bound, below the first and above the last."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.metrics import BatchHistogram

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


def exposition_lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith("latency_") and "_created" not in line]


def test_batches_expose_what_observing_one_value_at_a_time_would():
    values = [0.0, 0.05, 0.1, 0.5, 1.0, 60.0, 61.0, 1e9, *(random.Random(3).uniform(0, 70) for _ in range(5000))]
    reference_registry, batch_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("latency_seconds", "doc", buckets=BUCKETS, registry=reference_registry)
    for value in values:
        reference.observe(value)
    batched = BatchHistogram("latency_seconds", "doc", BUCKETS, batch_registry)
    batched.observe_many(values[:100])
    batched.observe_many([])
    batched.observe_many(values[100:])
    ours, theirs = exposition_lines(batch_registry), exposition_lines(reference_registry)
    assert [line.split()[0] for line in ours] == [line.split()[0] for line in theirs]
    for mine, expected in zip(ours, theirs, strict=True):  # the sum is added up in another order
        assert float(mine.split()[1]) == pytest.approx(float(expected.split()[1]), rel=1e-9), (mine, expected)
    assert 'latency_seconds_bucket{le="+Inf"} 5008.0' in ours
