"""Kafka stopped under a gateway mid-run: clients get 503 with Retry-After (never a success Kafka did not
acknowledge), readiness says so, and once the broker is back every event a client was told was accepted is in
the topic and stored."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest

from devstack.local import stack_up
from devstack.processes import read_state, stop_pid
from tests.integration.gateway import GatewayEnv, start_gateway
from tests.integration.harness import create_pipeline

pytestmark = pytest.mark.integration


@dataclass
class Client:
    """Posts 15-event batches one after another and, like the SDKs, sends a batch again after a 503."""

    gateway: GatewayEnv
    accepted: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            ids = [f"outage-{number}-{index}" for index in range(15)]
            events = [
                {"id": i, "timestamp": "2026-01-01T00:00:00Z", "type": "trace-create", "body": {"id": i}} for i in ids
            ]
            while not self.stop.is_set():
                try:
                    answer = self.gateway.post_json("/api/public/ingestion", {"batch": events})
                except OSError:
                    self.statuses[0] += 1
                    continue
                self.statuses[answer.status] += 1
                if answer.status == 207:
                    self.accepted.update(entry["id"] for entry in answer.json()["successes"])
                    break
                self.retry_after.add(answer.headers.get("Retry-After", ""))
                time.sleep(0.2)
            number += 1

    def count(self, status: int) -> int:
        return self.statuses[status]


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_kafka_stopped_mid_run_gives_503s_and_loses_nothing(stack: tuple, tmp_path):
    stack_dir, state = stack
    pipeline = create_pipeline(stack_dir, state, tmp_path)
    gateway = start_gateway(pipeline, project="outage")
    client = Client(gateway)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: len(client.accepted) >= 300, 30, "no traffic before the outage")
        stop_pid(read_state(stack_dir / "stack.json")["kafka"]["pid"], 30)
        accepted_when_stopped = len(client.accepted)
        _wait(lambda: client.count(503) >= 3, 30, f"no 503 while Kafka is down: {client.statuses}")
        assert gateway.request("GET", "/api/public/ready", auth=False).status == 503
        stack_up(stack_dir)  # the same broker, ports and data
        _wait(lambda: len(client.accepted) >= accepted_when_stopped + 300, 120, f"no recovery: {client.statuses}")
    finally:
        client.stop.set()
        thread.join(30)
    assert set(client.statuses) <= {207, 503}, client.statuses
    assert client.retry_after == {"2"}
    in_kafka = {orjson.loads(m.value)["id"] for m in pipeline.read_topic("ingestion")}
    assert client.accepted <= in_kafka, (
        f"{len(client.accepted - in_kafka)} events were answered 201 but are not in Kafka"
    )
    pipeline.drain()
    stored = {row["id"] for row in pipeline.tables()["traces"]}
    assert client.accepted <= stored
    assert gateway.stop() == 0, gateway.logs()
