"""``lfpipe load gateway``: one gateway process under load from ``wrk`` (compiled, so the client is not the
bottleneck; its CPU share is reported beside the gateway's), against producing the same events straight to
Kafka, in one run on fresh topics of the local stack.

Phases:
  A. SDK-shaped batches (15 events, as the v2 SDK sends them) as fast as the gateway accepts them;
  B. the same batches at half of A's rate (each wrk connection paced): request latency;
  C. OTLP/protobuf exports (50 gen_ai spans each) as fast as they are accepted;
  D. the same events as A produced straight to Kafka by lfpipe's own producer (acks=all, idempotent).
Accepted events are counted by the gateway (its ``/metrics``), so a 400 inside a 207 never counts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from devstack.local import stack_up
from load.benchmark import benchmark_shape
from load.gateway_bodies import BATCH_EVENTS, batch_bodies, otlp_bodies
from load.generate import generate_stream
from load.report import metric_value
from pipeline.config import Settings
from pipeline.endpoints import resolve
from pipeline.gateway.keys import config_key, make_key
from pipeline.net import free_port
from pipeline.producer import EventProducer
from pipeline.recordfile import Record
from pipeline.sources.config_feed import publish_config

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")
PROJECT = "load-gateway"
AUTHORIZATION = "Basic cGstbGYtbG9hZDpzay1sZi1sb2Fk"  # pk-lf-load:sk-lf-load


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int

    def accepted(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            metric_value(text, "lfpipe_gateway_events_total", f'endpoint="{endpoint}",outcome="accepted"')
            for endpoint in ("ingestion", "otel")
        )

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_gateway(settings: Settings, folder: Path) -> Gateway:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LFPIPE_")},
        "LFPIPE_STACK_DIR": str(settings.stack_dir.resolve()),
        "LFPIPE_TOPIC_PREFIX": settings.topic_prefix,
        "LFPIPE_ARCHIVE_URL": str(settings.archive_url),
        "LFPIPE_GATEWAY_LOGLEVEL": "warning",
    }
    _apply_topics(settings)
    asyncio.run(_publish_key(settings))
    log = open(folder / "gateway.log", "wb")  # noqa: SIM115 - owned by the gateway process
    command = [sys.executable, "-m", "pipeline.cli", "gateway", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/public/ready", timeout=2) as response:
                if response.status == 200:
                    return Gateway(process, port)
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"the gateway did not become ready; see {folder / 'gateway.log'}")


def _apply_topics(settings: Settings) -> None:
    env = {
        **os.environ,
        "LFPIPE_STACK_DIR": str(settings.stack_dir.resolve()),
        "LFPIPE_TOPIC_PREFIX": settings.topic_prefix,
    }
    subprocess.run([sys.executable, "-m", "pipeline.cli", "topics", "apply"], env=env, check=True, capture_output=True)


async def _publish_key(settings: Settings) -> None:
    key = make_key(PROJECT, "pk-lf-load", "sk-lf-load", "load")
    bootstrap = resolve(settings).kafka_bootstrap
    await publish_config(
        bootstrap, settings.topic("config"), config_key(PROJECT, "pk-lf-load"), msgspec.to_builtins(key)
    )


def _write_bodies(folder: Path, bodies: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, body in enumerate(bodies, 1):
        (folder / f"body-{index:05d}.bin").write_bytes(body)
    return folder


def _wrk(gateway: Gateway, path: str, bodies: Path, count: int, content_type: str, **options: Any) -> dict[str, Any]:
    """One wrk run; its summary with accepted events/s and the CPU shares of gateway and wrk."""
    connections, seconds, pause_ms = options["connections"], options["seconds"], options.get("pause_ms", 0)
    url = f"http://127.0.0.1:{gateway.port}{path}"
    command = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(WRK_SCRIPT), url, "--"]
    command += [str(bodies), str(count), str(pause_ms), content_type, AUTHORIZATION]
    accepted, cpu, started = gateway.accepted(), gateway.cpu_seconds(), time.monotonic()
    before = os.times()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    after = os.times()
    wall = time.monotonic() - started
    summary = orjson.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    wrk_cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return {
        **summary,
        "requests_per_second": summary["requests"] / (summary["duration_us"] / 1e6),
        "accepted_events_per_second": (gateway.accepted() - accepted) / (summary["duration_us"] / 1e6),
        "gateway_cpu_share": (gateway.cpu_seconds() - cpu) / wall,
        "wrk_cpu_share": wrk_cpu / wall,
    }


def _paced(gateway: Gateway, bodies: Path, count: int, rate: float, seconds: float) -> dict[str, Any]:
    """Requests at about ``rate`` per second: each connection waits a fixed pause before every request, the
    pause calibrated once against the latency a short first run shows."""
    connections = 16

    def run(seconds: float, pause: float) -> dict[str, Any]:
        return _wrk(
            gateway,
            "/api/public/ingestion",
            bodies,
            count,
            "application/json",
            connections=connections,
            seconds=seconds,
            pause_ms=int(pause),
        )

    pause = connections * 1000 / rate
    probe = run(4, pause)
    latency_ms = max(0.0, connections * 1000 / probe["requests_per_second"] - pause)
    return run(seconds, max(0.0, pause - latency_ms))


async def _direct(bootstrap: str, topic: str, records: list[Record]) -> float:
    async with EventProducer(bootstrap, topic) as producer:
        started = time.monotonic()
        await producer.send_records(records)
        return len(records) / (time.monotonic() - started)


def run_gateway_load(
    base: Settings, traces: int, seed: int, seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is needed to load the gateway (Debian: apt install wrk)")
    stack_up(base.stack_dir)
    run = f"gwload{int(time.time())}"
    settings = base.model_copy(update={"topic_prefix": f"{run}-", "archive_url": f"s3://lfpipe/{run}"})
    records = [r for r in generate_stream(benchmark_shape(traces, seed)) if r.key != b"invalid"]
    # Phase D's topic is made first, so that its partitions have leaders long before it is used.
    direct_settings = base.model_copy(update={"topic_prefix": f"{run}direct-"})
    _apply_topics(direct_settings)
    batches = batch_bodies(records)
    with tempfile.TemporaryDirectory(prefix="lfpipe-gateway-load-") as scratch:
        folder = Path(scratch)
        batch_folder = _write_bodies(folder / "batches", batches)
        otlp_folder = _write_bodies(folder / "otlp", otlp_bodies(200, seed))
        say(f"{len(records)} events in {len(batches)} batches of {BATCH_EVENTS}; 200 OTLP exports of 50 spans")
        gateway = _start_gateway(settings, folder)
        try:
            say("phase A: batches as fast as accepted")
            full = _wrk(
                gateway,
                "/api/public/ingestion",
                batch_folder,
                len(batches),
                "application/json",
                connections=64,
                seconds=seconds,
            )
            half_rate = full["requests_per_second"] / 2
            say(f"phase B: batches at half rate ({half_rate:.0f} requests/s)")
            half = _paced(gateway, batch_folder, len(batches), half_rate, seconds)
            say("phase C: OTLP exports as fast as accepted")
            otlp = _wrk(
                gateway,
                "/api/public/otel/v1/traces",
                otlp_folder,
                200,
                "application/x-protobuf",
                connections=16,
                seconds=seconds,
            )
        finally:
            gateway.process.terminate()
            gateway.process.wait(60)
    say("phase D: the same events straight to Kafka")
    direct = asyncio.run(_direct(resolve(base).kafka_bootstrap, direct_settings.topic("ingestion"), records))
    return _figures(full, half, otlp, direct)


def _figures(full: dict[str, Any], half: dict[str, Any], otlp: dict[str, Any], direct: float) -> dict[str, Any]:
    ms = 1000.0
    return {
        "batch_api_events_per_second": round(full["accepted_events_per_second"]),
        "batch_api_requests_per_second": round(full["requests_per_second"]),
        "direct_produce_events_per_second": round(direct),
        "ratio_to_direct_produce": round(full["accepted_events_per_second"] / direct, 3),
        "latency_p50_ms_at_full_rate": round(full["p50_us"] / ms, 1),
        "latency_p99_ms_at_full_rate": round(full["p99_us"] / ms, 1),
        "half_rate_requests_per_second": round(half["requests_per_second"]),
        "latency_p50_ms_at_half_rate": round(half["p50_us"] / ms, 1),
        "latency_p99_ms_at_half_rate": round(half["p99_us"] / ms, 1),
        "otlp_events_per_second": round(otlp["accepted_events_per_second"]),
        "otlp_exports_per_second": round(otlp["requests_per_second"]),
        "otlp_latency_p99_ms": round(otlp["p99_us"] / ms, 1),
        "non_2xx_or_socket_errors": sum(r["non_2xx"] + r["socket_errors"] for r in (full, half, otlp)),
        "gateway_cpu_share_at_full_rate": round(full["gateway_cpu_share"], 2),
        "wrk_cpu_share_at_full_rate": round(full["wrk_cpu_share"], 2),
    }
