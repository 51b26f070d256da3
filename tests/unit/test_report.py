"""Report arithmetic: Prometheus histogram parsing and quantiles, rates of cumulative series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from load.report import Point, Samples, build_report, histogram_buckets, quantile


def _observed(values: list[float], buckets: tuple[float, ...]) -> dict[float, float]:
    registry = CollectorRegistry()
    histogram = Histogram("lfpipe_end_to_end_seconds", "test", buckets=buckets, registry=registry)
    for value in values:
        histogram.observe(value)
    return histogram_buckets(generate_latest(registry).decode(), "lfpipe_end_to_end_seconds")


def test_quantiles_interpolate_inside_the_bucket_that_holds_the_rank():
    # 100 observations spread evenly over (1, 2]: the median sits half way through that bucket.
    buckets = _observed([1 + i / 100 for i in range(1, 101)], (1, 2, 4))
    assert quantile(buckets, 0.5) == pytest.approx(1.5)
    assert quantile(buckets, 0.99) == pytest.approx(1.99)


def test_quantile_beyond_the_largest_bucket_is_that_bucket_bound():
    buckets = _observed([0.5, 100, 100, 100], (1, 2))
    assert quantile(buckets, 0.99) == 2


def test_no_observations_give_no_quantile():
    assert quantile(_observed([], (1, 2)), 0.5) is None
    assert quantile({}, 0.5) is None


def test_report_counts_the_window_and_its_peak_lag():
    samples = Samples([Point(0, 100, 100, 3), Point(1, 600, 300, 3), Point(2, 1100, 1100, 5)])
    report = build_report(samples, {}, {"traces": 1})
    assert (report.produced, report.committed, report.dead_letters) == (1000, 1000, 2)
    assert report.committed_per_second == 500
    assert (report.peak_lag, report.final_lag) == (300, 0)
    assert samples.rates("committed") == [(1, 200), (2, 800)]


def test_a_report_without_samples_says_why():
    with pytest.raises(ValueError, match="no samples"):
        build_report(Samples(), {}, {})
