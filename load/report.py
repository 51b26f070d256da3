"""Run reports: what went into the ingestion topic, what the consumer group made durable, lag, dead letters,
rows and end-to-end latency, sampled while a stream is processed; as text, JSON and a PNG chart."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from pipeline.operations.lag import OffsetReader

LATENCY_METRIC = "lfpipe_end_to_end_seconds"


@dataclass
class Point:
    at: float  # seconds since the report started
    produced: int  # messages in the ingestion topic (sum of end offsets)
    committed: int  # messages the group has committed, so made durable
    dead_letters: int  # messages in the dead-letter topic

    @property
    def lag(self) -> int:
        return max(0, self.produced - self.committed)


@dataclass
class Samples:
    points: list[Point] = field(default_factory=list)

    def rates(self, attribute: str) -> list[tuple[float, float]]:
        """Per-interval rate of a cumulative series, events/s."""
        pairs = zip(self.points, self.points[1:], strict=False)
        return [
            (b.at, (getattr(b, attribute) - getattr(a, attribute)) / (b.at - a.at)) for a, b in pairs if b.at > a.at
        ]


class OffsetProbe(OffsetReader):
    """Samples one consumer group on the ingestion topic, and the dead-letter topic."""

    def __init__(self, bootstrap: str, group: str, topic: str, dead_letter_topic: str) -> None:
        super().__init__(bootstrap)
        self.group, self.topic, self.dead_letter_topic = group, topic, dead_letter_topic

    async def read(self, at: float) -> Point:
        lags = await self.lag_by_partition(self.group, self.topic)
        ends = await self.end_offsets(self.topic)
        dead = await self.end_offsets(self.dead_letter_topic)
        produced = sum(ends.values())
        return Point(
            at=round(at, 3),
            produced=produced,
            committed=produced - sum(lags.values()),
            dead_letters=sum(dead.values()),
        )


async def sample(probe: OffsetProbe, samples: Samples, stop: asyncio.Event, interval: float = 0.5) -> None:
    """Fill ``samples`` until ``stop`` is set."""
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(KafkaError):  # a broker hiccup costs one sample, not the report
            samples.points.append(await probe.read(time.monotonic() - started))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def scrape(web_port: int) -> str | None:
    """A worker's /metrics text; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def worker_ready(web_port: int) -> bool:
    """Whether a worker's /readyz says it can make progress (catalog read, partitions assigned)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def metric_value(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def worker_consumed(web_port: int) -> float | None:
    """Events a running worker has consumed; None while it does not answer."""
    text = scrape(web_port)
    return None if text is None else metric_value(text, "lfpipe_events_total", 'outcome="consumed"')


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram: upper bound -> count."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f'{name}_bucket{{le="'):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Quantile from cumulative buckets, interpolating linearly inside a bucket as Prometheus'
    histogram_quantile does; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the largest finite bucket: its bound is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_between(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


@dataclass
class RunReport:
    seconds: float
    produced: int
    committed: int
    dead_letters: int
    produced_per_second: float | None
    committed_per_second: float | None
    peak_lag: int
    final_lag: int
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None
    rows: dict[str, int]
    samples: list[dict[str, Any]]

    def figures(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if name not in ("samples", "rows")} | {
            f"rows in {table} (FINAL)": count for table, count in self.rows.items()
        }


def build_report(samples: Samples, latency: dict[float, float], rows: dict[str, int]) -> RunReport:
    """Figures of the sampled window: counts are changes between its first and last sample."""
    if not samples.points:
        raise ValueError("no samples were taken: is the broker reachable?")
    start, end = samples.points[0], samples.points[-1]
    seconds = end.at - start.at

    def per_second(count: int) -> float | None:
        return round(count / seconds, 1) if seconds > 0 else None

    produced, committed = end.produced - start.produced, end.committed - start.committed
    return RunReport(
        seconds=round(seconds, 2),
        produced=produced,
        committed=committed,
        dead_letters=end.dead_letters - start.dead_letters,
        produced_per_second=per_second(produced),
        committed_per_second=per_second(committed),
        peak_lag=max(point.lag for point in samples.points),
        final_lag=end.lag,
        latency_p50_seconds=_round(quantile(latency, 0.50)),
        latency_p99_seconds=_round(quantile(latency, 0.99)),
        rows=rows,
        samples=[asdict(point) | {"lag": point.lag} for point in samples.points],
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def observe(
    probe: OffsetProbe,
    worker_ports: list[int],
    until_idle: float,
    max_seconds: float,
    progress: Callable[[Point], None] = lambda _: None,
    interval: float = 0.5,
) -> tuple[Samples, dict[float, float]]:
    """Sample until nothing new arrived and the group has caught up for ``until_idle`` seconds (after at least
    one message arrived or was committed), or ``max_seconds`` passed. Returns the samples and the latency
    histogram's change over the window, summed over the workers."""
    before = [await asyncio.to_thread(_latency_of, port) for port in worker_ports]
    samples = Samples()
    started = time.monotonic()
    idle_since: float | None = None
    while True:
        try:
            point = await probe.read(time.monotonic() - started)
        except KafkaError:  # e.g. no group coordinator yet on a fresh broker: try again next interval
            if time.monotonic() - started >= max_seconds:
                break
            await asyncio.sleep(interval)
            continue
        samples.points.append(point)
        progress(point)
        first = samples.points[0]
        moved = point.produced > first.produced or point.committed > first.committed
        previous = samples.points[-2] if len(samples.points) > 1 else point
        quiet = point.lag == 0 and point.produced == previous.produced
        idle_since = (idle_since or point.at) if quiet and moved else None
        if (idle_since is not None and point.at - idle_since >= until_idle) or point.at >= max_seconds:
            break
        await asyncio.sleep(interval)
    latency: dict[float, float] = {}
    for port, start in zip(worker_ports, before, strict=True):
        for bound, count in latency_between(start, await asyncio.to_thread(_latency_of, port)).items():
            latency[bound] = latency.get(bound, 0.0) + count
    return samples, latency


def _latency_of(port: int) -> dict[float, float]:
    text = scrape(port)
    return histogram_buckets(text, LATENCY_METRIC) if text else {}


def render_text(title: str, figures: dict[str, Any]) -> str:
    width = max(len(name) for name in figures)
    lines = [title, "-" * len(title)]
    lines += [f"{name.ljust(width)}  {value}" for name, value in figures.items()]
    return "\n".join(lines)


def render_chart(samples: Samples, path: Path, title: str) -> None:
    """Throughput in and out, consumer lag and dead letters over time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axis, lag_axis, dead_axis) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for attribute, label, colour in (("produced", "in (produced)", "tab:gray"), ("committed", "out", "tab:blue")):
        rates = samples.rates(attribute)
        if rates:
            times, values = zip(*rates, strict=True)
            rate_axis.plot(times, values, label=label, color=colour)
    rate_axis.set_ylabel("events / s")
    rate_axis.set_title(title)
    rate_axis.legend(loc="upper right")
    times = [point.at for point in samples.points]
    lag_axis.plot(times, [point.lag for point in samples.points], color="tab:red")
    lag_axis.set_ylabel("consumer lag (messages)")
    first = samples.points[0].dead_letters if samples.points else 0
    dead_axis.plot(times, [point.dead_letters - first for point in samples.points], color="tab:purple")
    dead_axis.set_ylabel("dead letters")
    dead_axis.set_xlabel("seconds since start")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def save_report(samples: Samples, latency: dict[float, float], rows: dict[str, int], folder: Path) -> RunReport:
    """Build the report and write ``report.json`` and ``report.png`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(samples, latency, rows)
    (folder / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    render_chart(samples, folder / "report.png", f"run of {report.committed} events")
    return report
