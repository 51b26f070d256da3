"""The real local stack (Kafka KRaft from Maven Central jars, SeaweedFS S3) for the integration tests.

Started once per test session on free 127.0.0.1 ports and stopped by PID; each test gets its own topics,
chDB folder and archive prefix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.stack.local import stack_down, stack_up
from pipeline.stack.processes import free_port
from tests.integration.harness import ClickHouseFront, PipelineEnv


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    stack_dir = tmp_path_factory.mktemp("stack")
    state = stack_up(stack_dir)
    try:
        yield stack_dir, state
    finally:
        stack_down(stack_dir)


@pytest.fixture
def pipeline_factory(stack: tuple[Path, dict], tmp_path: Path) -> Iterator[Callable[..., PipelineEnv]]:
    """Makes isolated pipelines on the shared stack (topics applied, ClickHouse migrated)."""
    stack_dir, state = stack

    fronts: list[ClickHouseFront] = []

    def make(shared_clickhouse: bool = False) -> PipelineEnv:
        """``shared_clickhouse``: ClickHouse behind a test HTTP front over chDB, so several workers can share it
        and a test can stop it; otherwise the worker embeds chDB."""
        prefix = f"t{uuid.uuid4().hex[:8]}-"
        workdir = tmp_path / prefix.rstrip("-")
        workdir.mkdir()
        clickhouse_url = f"chdb://{workdir / 'chdb'}"
        front = None
        if shared_clickhouse:
            front = ClickHouseFront(workdir / "chdb", free_port(), workdir / "clickhouse-front.log")
            fronts.append(front)
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
        pipeline = PipelineEnv(state, env, prefix, workdir, front)
        pipeline.cli("topics", "apply")
        pipeline.cli("migrate")
        return pipeline

    yield make
    for front in fronts:
        front.stop()


@pytest.fixture
def pipeline_env(pipeline_factory: Callable[..., PipelineEnv]) -> PipelineEnv:
    return pipeline_factory()
