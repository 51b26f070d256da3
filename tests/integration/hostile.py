"""The hostile-input campaign: hostile messages (``load.hostile``) mixed with valid neighbours, through a real
worker, then an account of every message.

Asserted by ``test_hostile_campaign.py`` (a few thousand messages in CI) and by the long run:

    python -m tests.integration.hostile --messages 100000 [--seed 1] [--neighbours 400]

which runs its own local stack in a temporary folder (stopped by PID) and prints a JSON report: messages by
outcome and reason kind, crashes, stalls, silent drops, and neighbour rows that differ from the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from devstack.local import stack_down, stack_up
from load.generate import StreamShape, generate_stream
from load.hostile import hostile_records
from pipeline.operations.lag import consumer_lag
from pipeline.recordfile import Record
from tests.integration.harness import PipelineEnv, create_pipeline
from tests.integration.oracle import mismatches

STALL_SECONDS = 90  # no commit progress for this long while messages wait: the worker is stuck
REASON_KINDS = frozenset(
    {
        "too_large",
        "malformed_json",
        "invalid_envelope",
        "unknown_type",
        "invalid_body",
        "wrong_key",
        "failed_semantic_check",
        "rejected_by_store",
        "internal_error",
    }
)


def campaign_stream(messages: int, neighbour_traces: int, seed: int) -> tuple[list[Record], list[Record]]:
    """Hostile messages with valid neighbours (project ``project-0``) shuffled in; returns (all, neighbours)."""
    shape = StreamShape(traces=neighbour_traces, seed=seed, projects=1, invalid=0, duplicates=0.02, media=0.05)
    neighbours = list(generate_stream(shape))
    hostile = list(hostile_records(messages, seed))
    # Neighbours keep their order among themselves (creates before their updates); hostile ones go anywhere.
    picks = [True] * len(neighbours) + [False] * len(hostile)
    random.Random(seed).shuffle(picks)
    from_neighbours, from_hostile = iter(neighbours), iter(hostile)
    return [next(from_neighbours) if pick else next(from_hostile) for pick in picks], neighbours


def produce(pipeline: PipelineEnv, records: list[Record]) -> None:
    async def send() -> None:
        # Headers of several megabytes of zeros compress to nothing: the topic accepts them, so must the producer.
        producer = AIOKafkaProducer(
            bootstrap_servers=pipeline.bootstrap, compression_type="zstd", max_request_size=20_000_000, linger_ms=20
        )
        await producer.start()
        try:
            for record in records:
                await producer.send(
                    pipeline.topic("ingestion"), record.value, key=record.key, headers=list(record.headers)
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def run_worker(pipeline: PipelineEnv, say: Any) -> dict[str, Any]:
    """A worker until it has drained the topic: its exit code, and the longest time without commit progress."""
    group, topic = pipeline.env["LFPIPE_CONSUMER_GROUP"], pipeline.topic("ingestion")
    worker = pipeline.start_worker(exit_when_idle=3)
    last_lag, last_progress, longest = None, time.monotonic(), 0.0
    while worker.poll() is None:
        time.sleep(1)
        try:
            lag = asyncio.run(consumer_lag(pipeline.bootstrap, group, topic))
        except Exception:  # the broker is busy; the next sample decides
            continue
        if lag != last_lag:
            last_lag, last_progress = lag, time.monotonic()
            say(f"lag {lag}")
        longest = max(longest, time.monotonic() - last_progress if lag else 0.0)
        if longest > STALL_SECONDS:
            worker.kill()
            break
    return {"exit_code": worker.wait(60), "longest_without_progress_seconds": round(longest, 1)}


def account(pipeline: PipelineEnv, neighbours: list[Record]) -> dict[str, Any]:
    """Every message in the topic is archived (stored) or a dead letter with a reason, never neither or both."""
    positions = {(m.partition, m.offset) for m in pipeline.read_topic("ingestion")}
    archived = {(r.partition, r.offset) for r in pipeline.archive()}
    letters: dict[tuple[int, int], dict[str, str]] = {}
    for message in pipeline.read_topic("ingestion-deadletter"):
        headers = {name: value.decode(errors="replace") for name, value in message.headers}
        letters[(int(headers["lfpipe.partition"]), int(headers["lfpipe.offset"]))] = headers
    tables = pipeline.tables()
    theirs = {
        table: [row for row in tables[table] if row["project_id"] == "project-0"]
        for table in ("traces", "observations", "scores")
    }
    kinds = Counter(headers.get("lfpipe.reason-kind", "") for headers in letters.values())
    return {
        "messages": len(positions),
        "stored": len(archived & positions),
        "dead_letters": dict(sorted(kinds.items())),
        "letters_without_reason": sum(1 for h in letters.values() if not h.get("lfpipe.reason", "").strip()),
        "unknown_reason_kinds": sorted(set(kinds) - REASON_KINDS),
        "silent_drops": len(positions - archived - letters.keys()),
        "both_stored_and_dead_lettered": len(archived & letters.keys()),
        "neighbour_mismatches": mismatches(theirs, neighbours),
    }


def campaign(pipeline: PipelineEnv, messages: int, neighbour_traces: int, seed: int, say: Any) -> dict[str, Any]:
    stream, neighbours = campaign_stream(messages, neighbour_traces, seed)
    say(f"producing {len(stream)} messages ({len(stream) - len(neighbours)} hostile)")
    produce(pipeline, stream)
    runs = [run_worker(pipeline, say), run_worker(pipeline, say)]  # a restart must not crash either
    report = {
        "worker_exit_codes": [run["exit_code"] for run in runs],
        "longest_without_progress_seconds": max(run["longest_without_progress_seconds"] for run in runs),
        **account(pipeline, neighbours),
    }
    report["crashes"] = sum(1 for code in report["worker_exit_codes"] if code != 0)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="The hostile-input campaign on a private local stack.")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--neighbours", type=int, default=400, help="valid neighbour traces")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {line}", flush=True)

    with tempfile.TemporaryDirectory(prefix="lfpipe-hostile-") as folder:
        stack_dir = Path(folder) / "stack"
        state = stack_up(stack_dir)
        try:
            pipeline = create_pipeline(stack_dir, state, Path(folder))
            report = campaign(pipeline, args.messages, args.neighbours, args.seed, say)
        finally:
            stack_down(stack_dir)
    report["seconds"] = round(time.monotonic() - started)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    sys.exit(0 if healthy(report) else 1)


def healthy(report: dict[str, Any]) -> bool:
    """0 crashes, 0 stalls, 0 silent drops, every letter with a known reason, neighbours as the reference says."""
    return not (
        report["crashes"]
        or report["longest_without_progress_seconds"] >= STALL_SECONDS
        or report["silent_drops"]
        or report["both_stored_and_dead_lettered"]
        or report["letters_without_reason"]
        or report["unknown_reason_kinds"]
        or report["neighbour_mismatches"]
    )


if __name__ == "__main__":
    main()
