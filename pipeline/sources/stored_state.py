"""Stored state of entities that are not in a worker's memory: their ClickHouse rows and merge clocks.

Not a sink: it only reads, through the same retry policy as the sinks (a ClickHouse outage is backpressure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson

from pipeline.runtime.batch import EntityKey, StoredState
from pipeline.runtime.retry import Health, retried
from pipeline.stores.clickhouse import ClickHouse
from pipeline.transforms.rows import EVENT_FIELDS, TABLE_BY_ENTITY


def read_states(clickhouse: ClickHouse, keys: Iterable[EntityKey]) -> dict[EntityKey, StoredState]:
    """Stored rows and clocks for (entity, project, id) keys (on the ClickHouse thread).

    One primary-key lookup in ``merge_clocks`` finds the entities that exist; only those are read from their
    tables. A row without clocks can only come from a crash inside the entity's first flush, whose events are
    all uncommitted and come back, so treating that entity as new is exact.
    """
    keys = list(keys)
    if not keys:
        return {}
    client = clickhouse.client
    known = client.query(
        "SELECT entity, project_id, id, clocks FROM merge_clocks FINAL "
        "WHERE (entity, project_id, id) IN {keys:Array(Tuple(String, String, String))}",
        parameters={"keys": keys},
    ).result_rows
    clocks = {(entity, project, entity_id): orjson.loads(raw) for entity, project, entity_id, raw in known}
    wanted: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for entity, project, entity_id in clocks:
        wanted[entity].append((project, entity_id))
    found: dict[EntityKey, tuple[dict[str, Any], dict[str, Any]]] = {}
    for entity, pairs in wanted.items():
        # One query per table whatever the projects: each query has a fixed cost that dominates small batches.
        columns = ["id", "project_id", "created_at", "metadata", *sorted(EVENT_FIELDS[entity])]
        if entity == "trace":
            columns.append("tags")
        rows = client.query(
            f"SELECT {', '.join(columns)} FROM {TABLE_BY_ENTITY[entity]} FINAL "
            "WHERE (project_id, id) IN {pairs:Array(Tuple(String, String))}",
            parameters={"pairs": pairs},
        ).named_results()
        for row in rows:
            key = (entity, row["project_id"], row["id"])
            found[key] = (row, clocks[key])
    return found


class StoredStateReader:
    name = "clickhouse-read"

    def __init__(self, clickhouse: ClickHouse, retry_max_seconds: float, health: Health) -> None:
        self.clickhouse = clickhouse
        self.retry_max_seconds = retry_max_seconds
        self.health = health

    async def read(self, keys: list[EntityKey]) -> dict[EntityKey, StoredState]:
        if not keys:
            return {}
        return await retried(
            self.name,
            lambda: self.clickhouse.run(read_states, self.clickhouse, keys),
            self.retry_max_seconds,
            self.health,
        )
