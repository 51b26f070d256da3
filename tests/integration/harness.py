"""Running the real pipeline in tests: workers as subprocesses, data read back from the real services."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from devstack.processes import require_free, wait_for_port
from pipeline.net import free_port
from pipeline.operations.lag import consumer_lag
from pipeline.producer import EventProducer
from pipeline.recordfile import Record, decode_records
from pipeline.stores.objects import open_store

DUMP_SCRIPT = Path(__file__).with_name("dump_tables.py")
FRONT_SCRIPT = Path(__file__).parent.parent / "chdb_front.py"
# Worker logs land next to each test's data; set LFPIPE_TEST_WORKER_LOGLEVEL=debug to see commits and rebalances.
WORKER_LOGLEVEL = os.environ.get("LFPIPE_TEST_WORKER_LOGLEVEL", "warning")


@dataclass
class ClickHouseFront:
    """The test-only ClickHouse HTTP front over one chDB folder (``tests/chdb_front.py``), stopped by PID."""

    folder: Path
    port: int
    log: Path
    refuse_value: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        require_free(self.port, timeout=30)
        with open(self.log, "ab") as log:
            command = [sys.executable, str(FRONT_SCRIPT), "--path", str(self.folder), "--port", str(self.port)]
            if self.refuse_value:
                command += ["--refuse-value", self.refuse_value]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", self.port, 60, self.process.pid, self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None


@dataclass
class PipelineEnv:
    """One isolated pipeline: its own topics, chDB folder and archive prefix on the shared stack."""

    stack_state: dict[str, Any]
    env: dict[str, str]
    prefix: str
    workdir: Path
    clickhouse_front: ClickHouseFront | None = None

    @property
    def bootstrap(self) -> str:
        return self.stack_state["kafka"]["bootstrap"]

    @property
    def chdb(self) -> Path:
        return self.workdir / "chdb"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def cli(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"lfpipe {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def start_worker(self, **settings: Any) -> subprocess.Popen[bytes]:
        env = {**self.env, **{f"LFPIPE_{k.upper()}": str(v) for k, v in settings.items()}}
        log = open(self.workdir / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - owned by the process
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "--loglevel", WORKER_LOGLEVEL],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def drain(self, timeout: float = 240, **settings: Any) -> None:
        """Run a worker until it has caught up and exits on its own."""
        worker = self.start_worker(exit_when_idle=2, **settings)
        assert worker.wait(timeout) == 0, self.worker_logs()

    def wait_for_lag_zero(self, timeout: float) -> None:
        """Until the group has committed everything in the ingestion topic."""
        deadline = time.monotonic() + timeout
        group, topic = self.env["LFPIPE_CONSUMER_GROUP"], self.topic("ingestion")
        while True:
            try:
                if not asyncio.run(consumer_lag(self.bootstrap, group, topic)):
                    return
            except KafkaError as exc:  # a broker that has just started has no group coordinator yet
                if not exc.retriable:
                    raise
            assert time.monotonic() < deadline, f"the group did not catch up:\n{self.worker_logs()}"
            time.sleep(0.5)

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.workdir.glob("worker-*.log")))

    def tables(self) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, str(DUMP_SCRIPT), self.env["LFPIPE_CLICKHOUSE_URL"]],
            env=self.env,
            capture_output=True,
            timeout=120,
            check=True,
        )
        return orjson.loads(result.stdout)

    def produce(self, records: list[Record]) -> None:
        async def send() -> None:
            async with EventProducer(self.bootstrap, self.topic("ingestion")) as producer:
                await producer.send_records(records)

        asyncio.run(send())

    def read_topic(self, name: str) -> list[Any]:
        async def read() -> list[Any]:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await consumer.start()
            try:
                partitions = [
                    TopicPartition(self.topic(name), p) for p in consumer.partitions_for_topic(self.topic(name)) or ()
                ]
                if not partitions:
                    await consumer._client.force_metadata_update()
                    partitions = [
                        TopicPartition(self.topic(name), p)
                        for p in consumer.partitions_for_topic(self.topic(name)) or ()
                    ]
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                ends = await consumer.end_offsets(partitions)
                messages = []
                while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for items in batch.values():
                        messages.extend(items)
                return messages
            finally:
                await consumer.stop()

        return asyncio.run(read())

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix`` in this pipeline's archive bucket (real S3 reads)."""
        s3 = self.stack_state["s3"]

        async def read() -> dict[str, bytes]:
            store = open_store(self.env["LFPIPE_ARCHIVE_URL"], s3["endpoint"], s3["access_key"], s3["secret_key"])
            try:
                return {key: await store.get(key) async for key in store.list(prefix)}
            finally:
                await store.close()

        return asyncio.run(read())

    def archive(self) -> list[Record]:
        return [record for data in self.objects("raw/").values() for record in decode_records(data)]


def create_pipeline(
    stack_dir: Path,
    stack_state: dict[str, Any],
    parent: Path,
    shared_clickhouse: bool = False,
    refuse_value: str | None = None,
) -> PipelineEnv:
    """An isolated pipeline on a running stack: its own topics (applied), ClickHouse (migrated) and archive
    prefix. ``shared_clickhouse`` puts ClickHouse behind the test HTTP front, for several workers and outages;
    ``refuse_value`` makes that front refuse inserts carrying it."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    workdir = parent / prefix.rstrip("-")
    workdir.mkdir(parents=True)
    clickhouse_url = f"chdb://{workdir / 'chdb'}"
    front = None
    if shared_clickhouse:
        front = ClickHouseFront(workdir / "chdb", free_port(), workdir / "clickhouse-front.log", refuse_value)
        front.start()
        clickhouse_url = front.url
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LFPIPE_")},
        "LFPIPE_STACK_DIR": str(stack_dir),
        "LFPIPE_TOPIC_PREFIX": prefix,
        "LFPIPE_CONSUMER_GROUP": f"{prefix}workers",
        "LFPIPE_CLICKHOUSE_URL": clickhouse_url,
        "LFPIPE_ARCHIVE_URL": f"s3://lfpipe/{prefix.rstrip('-')}",
        "LFPIPE_SUMMARY_FILE": str(workdir / "worker-summary.json"),
    }
    pipeline = PipelineEnv(stack_state, env, prefix, workdir, front)
    pipeline.cli("topics", "apply")
    pipeline.cli("migrate")
    return pipeline


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
