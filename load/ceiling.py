"""Runtime ceilings: how fast a worker's runtime alone can consume the ingestion topic, with no processing.

Two consumers, each a Faust worker in its own process reading the same topic with its own consumer group:

* ``faust-stream``: an empty Faust agent on the topic, ``noack_take(5000, within=1.0)`` and an ack per event
  (how the worker consumed before the batch runtime);
* ``batch``: lfpipe's runtime with nothing to do: ``BatchSource.next_batch`` (aiokafka ``getmany``), each batch
  handed through the in-memory channel to an agent that resolves it, then the offsets committed.

``python -m load.ceiling KIND --bootstrap B --topic T --group G --expect N`` prints one JSON line: events,
seconds from the first message to the last, events/s and the process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from typing import Any

import faust
import orjson

from pipeline.runtime.app import WorkerBoot
from pipeline.sources.kafka import BatchSource


class Progress:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.first: float | None = None
        self.last = 0.0

    def add(self, count: int) -> None:
        self.first = self.first or time.monotonic()
        self.count += count
        self.last = time.monotonic()
        if self.count >= self.expect:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            seconds = self.last - (self.first or self.last)
            result = {
                "events": self.count,
                "seconds": round(seconds, 3),
                "events_per_second": round(self.count / seconds, 1) if seconds > 0 else None,
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            }
            sys.stdout.write(orjson.dumps(result).decode() + "\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGTERM)


def faust_stream_app(bootstrap: str, topic: str, group: str, expect: int) -> faust.App:
    app = faust.App(
        group, broker=f"kafka://{bootstrap}", value_serializer="raw", key_serializer="raw", web_enabled=False
    )
    app.conf.consumer_auto_offset_reset = "earliest"
    progress = Progress(expect)

    @app.agent(app.topic(topic, key_type=bytes, value_type=bytes))
    async def consume(stream: Any) -> None:
        async for events in stream.noack_take(5000, within=1.0):
            for event in events:
                await stream.ack(event)
            progress.add(len(events))

    return app


def batch_app(bootstrap: str, topic: str, group: str, expect: int) -> faust.App:
    app = faust.App(group, web_enabled=False)
    app.boot_strategy = WorkerBoot(app)
    progress = Progress(expect)
    channel = app.channel(maxsize=1)
    source = BatchSource(bootstrap, topic, group, 5000, 10.0)

    @app.agent(channel)
    async def durable(stream: Any) -> None:
        async for batch, done in stream:
            done.set_result(await source.commit(batch))

    @app.task
    async def ingest() -> None:
        app.flow_control.resume()
        await source.start(lambda _: asyncio.sleep(0))
        while True:
            batch = await source.next_batch(5000, 64_000_000, 1.0)
            if batch is None:
                continue
            done = asyncio.get_running_loop().create_future()
            await channel.send(value=(batch, done))
            await done
            progress.add(len(batch.records))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Consume a topic with an empty runtime and time it.")
    parser.add_argument("kind", choices=["faust-stream", "batch"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    args = parser.parse_args()
    make = faust_stream_app if args.kind == "faust-stream" else batch_app
    app = make(args.bootstrap, args.topic, args.group, args.expect)
    faust.Worker(app, loglevel="error", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()


def measure(kind: str, bootstrap: str, topic: str, group: str, expect: int, timeout: float = 600) -> dict[str, Any]:
    """Run one ceiling in its own process (each a fresh Faust worker) and return its figures."""
    command = [sys.executable, "-m", "load.ceiling", kind, "--bootstrap", bootstrap, "--topic", topic]
    command += ["--group", group, "--expect", str(expect)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    # Faust's terminal handling may put escape codes before the line: take it from its first brace.
    lines = [line[line.index("{") :] for line in result.stdout.splitlines() if '{"events"' in line]
    if not lines:
        raise RuntimeError(f"the {kind} ceiling run failed ({result.returncode}): {result.stderr[-2000:]}")
    return orjson.loads(lines[-1])
