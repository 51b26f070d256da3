"""The benchmark: the pipeline against a raw-copy baseline on the same stream, in one run.

Phases, each on fresh topics and a fresh chDB folder of the local stack:
  A. pipeline at full speed: the whole stream is in the topic before one worker starts; events/s is measured
     from its first to its last batch;
  B. raw-copy baseline (``load.baseline``) reading phase A's topic with its own consumer group;
  C. latency: a worker runs while the stream is replayed at half of A's rate; end-to-end latency is message
     timestamp to durable, per event;
  D. runtime ceilings on phase A's topic (``load.ceiling``): an empty Faust agent on Faust's per-event stream,
     and lfpipe's batch runtime with nothing to do.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from devstack.local import stack_up
from load.baseline import raw_copy
from load.ceiling import measure
from load.generate import StreamShape, generate_stream
from load.replay import Pace, replay
from load.report import OffsetProbe, Samples, render_chart, sample, worker_ready
from pipeline.archive_layout import ROOT
from pipeline.config import Settings
from pipeline.endpoints import resolve
from pipeline.net import free_port
from pipeline.operations.lag import consumer_lag
from pipeline.producer import EventProducer
from pipeline.recordfile import Record


@dataclass
class Phase:
    """One isolated namespace on the stack: topics, consumer group, chDB folder, archive prefix."""

    name: str
    settings: Settings
    folder: Path
    web_port: int

    @property
    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("LFPIPE_")},
            "LFPIPE_STACK_DIR": str(s.stack_dir.resolve()),
            "LFPIPE_TOPIC_PREFIX": s.topic_prefix,
            "LFPIPE_CONSUMER_GROUP": s.consumer_group,
            "LFPIPE_CLICKHOUSE_URL": str(s.clickhouse_url),
            "LFPIPE_ARCHIVE_URL": str(s.archive_url),
            "LFPIPE_SUMMARY_FILE": str(self.folder / "worker-summary.json"),
            "LFPIPE_WORKER_WEB_PORT": str(self.web_port),
        }

    def cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=self.env, check=True, capture_output=True)

    def start_worker(self, idle_seconds: float | None) -> subprocess.Popen[bytes]:
        log = open(self.folder / "worker.log", "wb")  # noqa: SIM115 - owned by the worker process
        idle = ["--exit-when-idle", str(idle_seconds)] if idle_seconds is not None else []
        command = [sys.executable, "-m", "pipeline.cli", "worker", *idle, "--loglevel", "warning"]
        return subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def summary(self) -> dict[str, Any]:
        return orjson.loads((self.folder / "worker-summary.json").read_bytes())


def _phase(base: Settings, run: str, name: str, root: Path) -> Phase:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    settings = base.model_copy(
        update={
            "topic_prefix": f"{run}{name}-",
            "consumer_group": f"{run}{name}-workers",
            "clickhouse_url": f"chdb://{folder / 'chdb'}",
            "archive_url": f"s3://lfpipe/{run}{name}",
        }
    )
    phase = Phase(name, settings, folder, free_port())
    phase.cli("topics", "apply")
    phase.cli("migrate")
    return phase


async def _produce(bootstrap: str, topic: str, records: list[Record], pace: Pace) -> float:
    async with EventProducer(bootstrap, topic) as producer:
        started = time.monotonic()
        # Records get fresh timestamps: end-to-end latency counts from the moment of sending.
        await replay(producer.send_record, records, pace)
        await producer.flush()
        return time.monotonic() - started


async def _run_worker(
    phase: Phase, bootstrap: str, records: list[Record], pace: Pace | None
) -> tuple[dict[str, Any], Samples]:
    """Phase A (``pace`` None: produce first, then process until idle) or C (offer the load at ``pace`` to a
    running worker, stop it with SIGTERM once it has caught up)."""
    topic = phase.settings.topic("ingestion")
    if pace is None:
        await _produce(bootstrap, topic, records, Pace())
    samples = Samples()
    stop = asyncio.Event()
    dead_letter_topic = phase.settings.topic("ingestion-deadletter")
    async with OffsetProbe(bootstrap, phase.settings.consumer_group, topic, dead_letter_topic) as probe:
        sampler = asyncio.create_task(sample(probe, samples, stop))
        worker = phase.start_worker(2 if pace is None else None)
        try:
            if pace is not None:
                # Offered load starts once the worker has read its catalog and joined the group.
                while not await asyncio.to_thread(worker_ready, phase.web_port) and worker.poll() is None:
                    await asyncio.sleep(0.2)
                await _produce(bootstrap, topic, records, pace)
                while worker.poll() is None and await consumer_lag(bootstrap, phase.settings.consumer_group, topic):
                    await asyncio.sleep(0.2)
                worker.terminate()
            while worker.poll() is None:
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await sampler
            if worker.poll() is None:
                worker.terminate()
    if worker.returncode != 0:
        raise RuntimeError(f"phase {phase.name}: worker failed, see {phase.folder / 'worker.log'}")
    return phase.summary(), samples


async def _archive_objects(phase: Phase) -> int:
    endpoints = resolve(phase.settings)
    store = endpoints.archive(str(phase.settings.archive_url))
    try:
        return len([key async for key in store.list(ROOT)])
    finally:
        await store.close()


def benchmark_shape(traces: int, seed: int) -> StreamShape:
    """The benchmark's stream: agent loops, Dify workflows and RAGFlow turns across 20 skewed projects, with images,
    large payloads, disorder, duplicates and invalid messages (also the stage benchmark's, ``load/stages.py``)."""
    return StreamShape(
        traces=traces,
        seed=seed,
        mix={"agent": 2, "dify": 1, "ragflow": 1},
        media=0.01,
        large_payloads=0.002,
        out_of_order=0.05,
        duplicates=0.01,
        invalid=0.002,
        projects=20,
    )


def run_benchmark(
    base: Settings, traces: int, seed: int, latency_seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    stack_up(base.stack_dir)
    run = f"bench{int(time.time())}"
    root = (base.stack_dir / "benchmarks" / run).resolve()
    records = list(generate_stream(benchmark_shape(traces, seed)))
    say(f"generated {len(records)} events ({sum(len(r.value) for r in records) / 1e6:.1f} MB)")
    bootstrap = resolve(base).kafka_bootstrap

    a = _phase(base, run, "a", root)
    say("phase A: pipeline at full speed")
    pipeline, samples_a = asyncio.run(_run_worker(a, bootstrap, records, None))
    render_chart(samples_a, root / "pipeline.png", f"pipeline at full speed ({len(records)} events)")

    say("phase B: raw-copy baseline on the same topic")
    baseline = asyncio.run(
        raw_copy(bootstrap, a.settings.topic("ingestion"), f"{run}-baseline", f"chdb://{root / 'baseline-chdb'}")
    )

    rate = max(100.0, 0.5 * float(pipeline["events_per_second"] or 0))
    count = min(len(records), int(rate * latency_seconds))
    c = _phase(base, run, "c", root)
    say(f"phase C: {count} events offered at {rate:.0f} events/s (half of phase A)")
    latency, samples_c = asyncio.run(_run_worker(c, bootstrap, records[:count], Pace(rate=rate)))
    render_chart(samples_c, root / "latency.png", f"offered load {rate:.0f} events/s")

    say("phase D: runtime ceilings (no processing) on phase A's topic")
    ceilings = {
        kind: measure(kind, bootstrap, a.settings.topic("ingestion"), f"{run}-{kind}", len(records))
        for kind in ("faust-stream", "batch")
    }
    objects = asyncio.run(_archive_objects(a))
    result = {
        "events": len(records),
        "pipeline_events_per_second": pipeline["events_per_second"],
        "baseline_events_per_second": baseline["events_per_second"],
        "ratio_to_baseline": round(float(pipeline["events_per_second"] or 0) / baseline["events_per_second"], 3)
        if baseline["events_per_second"]
        else None,
        "offered_events_per_second": round(rate),
        "latency_p50_seconds": latency["latency_p50_seconds"],
        "latency_p99_seconds": latency["latency_p99_seconds"],
        "peak_rss_mib": max(pipeline["peak_rss_mib"], latency["peak_rss_mib"]),
        "archive_objects_per_1000_events": round(objects * 1000 / len(records), 3),
        "max_consumer_lag_at_half_load": max((point.lag for point in samples_c.points), default=None),
        "ceiling_faust_stream_events_per_second": ceilings["faust-stream"]["events_per_second"],
        "ceiling_batch_runtime_events_per_second": ceilings["batch"]["events_per_second"],
        "stage_us_per_event": pipeline.get("stage_us_per_event", {}),
        "charts": [str(root / "pipeline.png"), str(root / "latency.png")],
    }
    (root / "result.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result
