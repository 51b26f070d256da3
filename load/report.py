"""Run reports: consumer lag and throughput sampled while a stream is processed, as text and a PNG chart."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.sources.lag import consumer_lag


@dataclass
class Samples:
    """Time series taken every ``interval`` seconds: (seconds since start, value)."""

    lag: list[tuple[float, int]] = field(default_factory=list)
    consumed: list[tuple[float, float]] = field(default_factory=list)


def worker_consumed(web_port: int) -> float | None:
    """Events a running worker has consumed (from its /metrics); None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('lfpipe_events_total{outcome="consumed"}'):
            return float(line.split()[-1])
    return 0.0  # the labelled counter appears with the first batch


async def sample(
    bootstrap: str,
    group: str,
    topic: str,
    web_port: int | None,
    samples: Samples,
    stop: asyncio.Event,
    interval: float = 0.5,
) -> None:
    """Fill ``samples`` until ``stop`` is set."""
    started = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - started
        with contextlib.suppress(Exception):  # the group may not exist yet
            samples.lag.append((now, await consumer_lag(bootstrap, group, topic)))
        if web_port:
            consumed = await asyncio.to_thread(worker_consumed, web_port)
            if consumed is not None:
                samples.consumed.append((now, consumed))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def render_text(title: str, figures: dict[str, Any]) -> str:
    width = max(len(name) for name in figures)
    lines = [title, "-" * len(title)]
    lines += [f"{name.ljust(width)}  {value}" for name, value in figures.items()]
    return "\n".join(lines)


def render_chart(samples: Samples, path: Path, title: str) -> None:
    """Consumer lag and processing rate over time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (lag_axis, rate_axis) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    if samples.lag:
        times, lags = zip(*samples.lag, strict=True)
        lag_axis.plot(times, lags, color="tab:red")
    lag_axis.set_ylabel("consumer lag (messages)")
    lag_axis.set_title(title)
    rates = [
        (t1, (c1 - c0) / (t1 - t0))
        for (t0, c0), (t1, c1) in zip(samples.consumed, samples.consumed[1:], strict=False)
        if t1 > t0
    ]
    if rates:
        times, values = zip(*rates, strict=True)
        rate_axis.plot(times, values, color="tab:blue")
    rate_axis.set_ylabel("events consumed / s")
    rate_axis.set_xlabel("seconds since start")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
