"""Fault injection on the real stack: SIGKILLed workers, a broker restart, ClickHouse and object storage down,
poison messages; and the oracle that says whether anything was lost or duplicated.

Used by the CI test (``test_faults.py``) and by the longer soak (``python -m tests.integration.soak``).
"""

from __future__ import annotations

import random
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from devstack.local import stack_up
from devstack.processes import read_state, stop_pid
from load.report import metric_value, scrape, worker_consumed
from pipeline.net import free_port
from pipeline.recordfile import Record
from tests.integration.harness import ClickHouseFront, PipelineEnv, kill_hard
from tests.integration.oracle import INVALID, archive_problems, mismatches, valid_events
from tests.reference import reference_rows

# Settings that make faults cheap to inject: small batches (many commit points to die between) and a short
# session timeout (a killed worker's partitions move on sooner).
WORKER_SETTINGS = {"batch_max_events": 200, "batch_max_seconds": 0.3, "session_timeout_seconds": 6}


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """A worker's /readyz: status code and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def poison_records(rng: random.Random) -> list[Record]:
    """Fuzzed bytes, a payload over the size limit, deep nesting, hostile ids, an empty message."""
    huge = orjson.dumps(
        {
            "id": f"big-{rng.getrandbits(32)}",
            "timestamp": "2026-11-01T00:00:00Z",
            "type": "trace-create",
            "project_id": "p",
            "body": {"id": "t", "input": "x" * 4_800_000},
        }
    )
    hostile = {"id": "\r\n", "timestamp": "x", "type": 1, "project_id": "../../etc", "body": []}
    return [
        Record(value=huge, key=b"p:trace:t"),
        Record(value=b"[" * 5000 + b"]" * 5000, key=b"deep"),
        Record(value=b'{"a":' * 3000 + b"1" + b"}" * 3000, key=b"deep-object"),
        Record(value=bytes(rng.getrandbits(8) for _ in range(2000)), key=b"fuzz"),
        Record(value=orjson.dumps(hostile), key=b"hostile"),
        Record(value=orjson.dumps({"id": "x" * 100_000, "type": "trace-create"}), key=b"long-id"),
        Record(value=b"", key=None),
    ]


@dataclass
class FaultRun:
    """What was injected and what was produced; ``verify`` compares the result with the reference."""

    pipeline: PipelineEnv
    stack_dir: Path
    rng: random.Random
    produced: list[Record] = field(default_factory=list)
    poison: set[bytes] = field(default_factory=set)
    kills: int = 0
    outages: list[str] = field(default_factory=list)
    say: Callable[[str], None] = lambda _: None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def produce(self, records: list[Record]) -> None:
        self.pipeline.produce(records)
        self.produced.extend(records)

    def start_worker(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        worker = self.pipeline.start_worker(worker_web_port=port, **WORKER_SETTINGS)
        self.workers.append(worker)
        return worker, port

    def stop_workers(self) -> None:
        """SIGKILL whatever a failed step left running (started here, stopped by PID)."""
        for worker in self.workers:
            if worker.poll() is None:
                kill_hard(worker)

    def wait_consumed(
        self, worker: subprocess.Popen[bytes], port: int, at_least: float, patience: float | None = None
    ) -> None:
        """Until the worker has consumed ``at_least`` events, or (with ``patience``) that many seconds passed
        since its metrics page first answered."""
        deadline = time.monotonic() + 120
        answered_at = None
        while (consumed := worker_consumed(port)) is None or consumed < at_least:
            assert worker.poll() is None, f"the worker died:\n{self.pipeline.worker_logs()}"
            assert time.monotonic() < deadline, f"the worker made no progress:\n{self.pipeline.worker_logs()}"
            if consumed is not None:
                answered_at = answered_at or time.monotonic()
                if patience is not None and time.monotonic() - answered_at >= patience:
                    return
            time.sleep(0.05)

    def kill_at_random_points(self, records: list[Record], kills: int) -> None:
        """Produce ``records``, then start and SIGKILL a worker ``kills`` times, each at a random point: after a
        random number of consumed events or a random time, so mid-batch, between batches or before it joined."""
        self.produce(records)
        for _ in range(kills):
            worker, port = self.start_worker()
            self.wait_consumed(worker, port, self.rng.randint(1, 800), patience=self.rng.uniform(0.5, 8))
            kill_hard(worker)
            self.kills += 1
            self.say(f"SIGKILL {self.kills}")

    def outage(
        self,
        name: str,
        seconds: float,
        records: list[Record],
        stop: Callable[[], None],
        start: Callable[[], None],
        felt_by: tuple[str, ...] = (),
    ) -> None:
        """Take a service away for ``seconds`` while a worker has ``records`` to consume (half produced before,
        half during the outage, or after it for Kafka); the worker must wait, not crash, and go on when the
        service is back. ``felt_by``: sinks whose failed attempts must show in the worker's metrics."""
        worker, port = self.start_worker()
        self.wait_consumed(worker, port, 0)  # ready: the metrics page answers
        half = len(records) // 2
        self.produce(records[:half])
        self.wait_consumed(worker, port, 1)
        stop()
        try:  # the service comes back even when an assertion fails: later tests share it
            self.say(f"{name} down for {seconds:.0f}s")
            if name != "kafka":
                self.produce(records[half:])
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                assert worker.poll() is None, (
                    f"the worker crashed during the {name} outage:\n{self.pipeline.worker_logs()}"
                )
                time.sleep(1)
            if felt_by:
                metrics = scrape(port) or ""
                failures = sum(metric_value(metrics, "lfpipe_sink_errors_total", f'sink="{sink}"') for sink in felt_by)
                assert failures > 0, f"the {name} outage was not felt by the worker"
                status, body = readiness(port)
                assert status == 503 and any("failing" in problem for problem in body["problems"]), body
        finally:
            start()
        if name == "kafka":
            self.produce(records[half:])
        self.outages.append(name)
        self.say(f"{name} back")
        self.finish(worker)

    def finish(self, worker: subprocess.Popen[bytes]) -> None:
        """Let a running worker catch up, then stop it gracefully (SIGTERM must exit 0)."""
        self.pipeline.wait_for_lag_zero(timeout=300)
        worker.terminate()
        assert worker.wait(60) == 0, f"SIGTERM should drain and exit 0:\n{self.pipeline.worker_logs()}"

    def stop_service(self, name: str) -> None:
        state = read_state(self.stack_dir / "stack.json") or {}
        stop_pid(state[name]["pid"], 30)

    def start_services(self) -> None:
        stack_up(self.stack_dir)  # restarts what is down, on the same ports and data

    def schedule(self, stream: list[Record], kills: int, outage_seconds: float, front: ClickHouseFront) -> None:
        """The whole fault schedule over ``stream`` in quarters: ``kills`` SIGKILLs at random points, a broker
        restart, ClickHouse down, then poison messages and object storage down."""
        quarter = len(stream) // 4
        self.kill_at_random_points(stream[:quarter], kills)
        self.outage("kafka", 5, stream[quarter : 2 * quarter], lambda: self.stop_service("kafka"), self.start_services)
        clickhouse_sinks = ("clickhouse", "clickhouse-read")
        part = stream[2 * quarter : 3 * quarter]
        self.outage("clickhouse", outage_seconds, part, front.stop, front.start, clickhouse_sinks)
        self.add_poison(poison_records(self.rng))
        stop_s3 = lambda: self.stop_service("s3")  # noqa: E731
        # Media objects go first when a batch has any; a batch of poison alone meets the outage when its oversize
        # letter spills to object storage.
        storage = ("archive", "media", "dead-letter topic")
        self.outage("object storage", outage_seconds, stream[3 * quarter :], stop_s3, self.start_services, storage)

    def add_poison(self, records: list[Record]) -> None:
        self.poison.update(record.value for record in records)
        self.produce(records)

    def verify(self) -> dict[str, Any]:
        """Drain, then compare: FINAL rows against the reference merge, the archive against what was produced,
        dead letters against the invalid messages."""
        self.pipeline.drain(timeout=300)
        tables = self.pipeline.tables()
        wellformed = [r for r in self.produced if r.value not in self.poison]
        letters = {
            (dict(m.headers)["lfpipe.partition"], dict(m.headers)["lfpipe.offset"])
            for m in self.pipeline.read_topic("ingestion-deadletter")
        }
        ids = [(t, row["project_id"], row["id"]) for t in ("traces", "observations", "scores") for row in tables[t]]
        return {
            "events_produced": len(self.produced),
            "kills_survived": self.kills,
            "outages_survived": list(self.outages),
            "rows_expected": len(reference_rows(valid_events(wellformed))),
            "rows_found": len(ids),
            "duplicate_final_rows": len(ids) - len(set(ids)),
            "row_mismatches": mismatches(tables, wellformed),
            "archive_problems": archive_problems(self.pipeline.archive(), wellformed),
            "dead_letters": len(letters),
            "dead_letters_expected": sum(1 for r in self.produced if r.value in INVALID or r.value in self.poison),
        }
