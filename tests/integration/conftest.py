"""The real local stack (Kafka KRaft from Maven Central jars, SeaweedFS S3) for the integration tests.

Started once per test session on free 127.0.0.1 ports and stopped by PID; each test gets its own topics,
chDB folder and archive prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.local import stack_down, stack_up
from tests.integration.harness import PipelineEnv, create_pipeline


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

    pipelines: list[PipelineEnv] = []

    def make(shared_clickhouse: bool = False, refuse_value: str | None = None) -> PipelineEnv:
        """``shared_clickhouse``: ClickHouse behind a test HTTP front over chDB, so several workers can share it
        and a test can stop it (``refuse_value``: the front refuses inserts carrying it); otherwise the worker
        embeds chDB."""
        pipeline = create_pipeline(stack_dir, state, tmp_path, shared_clickhouse or bool(refuse_value), refuse_value)
        pipelines.append(pipeline)
        return pipeline

    yield make
    for pipeline in pipelines:
        if pipeline.clickhouse_front:
            pipeline.clickhouse_front.stop()


@pytest.fixture
def pipeline_env(pipeline_factory: Callable[..., PipelineEnv]) -> PipelineEnv:
    return pipeline_factory()
