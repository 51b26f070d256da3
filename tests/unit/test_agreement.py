"""The fast path and the reference oracle agree on the whole benchmark stream, row for row.

The stream is ``lfpipe load benchmark``'s (agent loops, Dify and RAGFlow runs across 20 projects, images, large
payloads, disorder, duplicates, invalid messages), processed in 5,000-message batches as a worker reads it; the
oracle (``tests/reference.py``) folds every entity's events sequentially, as Langfuse does.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from load.stages import BATCH, stream
from pipeline.runtime.processor import Processor
from pipeline.transforms.catalog import Catalog
from tests.integration.oracle import COLUMNS, _expected, valid_events
from tests.reference import reference_rows

ENTITY_BY_TABLE = {"traces": "trace", "observations": "observation", "scores": "score"}


def _comparable(column: str, value: Any) -> Any:
    if column == "total_cost":
        return None if value is None else Decimal(value).normalize()
    return value


def test_the_processor_and_the_oracle_agree_on_the_benchmark_stream():
    records = stream(traces=1500, seed=11)
    processor = Processor(Catalog.with_defaults(), 4_500_000, 200_000, 1_000_000, check_keys=True)
    final: dict[tuple[str, str, str], dict[str, Any]] = {}
    for start in range(0, len(records), BATCH):
        out = processor.process(records[start : start + BATCH], lambda keys: {}, 0)
        for table, rows in out.rows.items():
            for row in rows:
                if table in ENTITY_BY_TABLE and not row["is_deleted"]:
                    final[(ENTITY_BY_TABLE[table], row["project_id"], row["id"])] = row
        processor.mark_durable(out)
    expected = reference_rows(valid_events(records))
    assert final.keys() == expected.keys()
    differences = [
        (key, column, _comparable(column, final[key][column]), _expected(column, row))
        for key, row in expected.items()
        for column in COLUMNS[key[0]]
        if _comparable(column, final[key][column]) != _expected(column, row)
    ]
    assert differences == [], differences[:5]
    assert len(final) > 10_000  # the whole stream, not a corner of it


def test_a_batch_prepared_fetch_by_fetch_gives_what_it_gives_prepared_at_once():
    """The worker prepares a batch while it is still being fetched (``begin``, ``prepare_more`` per fetch,
    ``finish``); rows, clocks, dead letters and counts must not depend on where the fetches split it."""
    records = stream(traces=300, seed=5)
    whole = Processor(Catalog.with_defaults(), 4_500_000, 200_000, 1_000_000, check_keys=True)
    pieces = Processor(Catalog.with_defaults(), 4_500_000, 200_000, 1_000_000, check_keys=True)
    splits = random.Random(8)
    compared = 0
    for start in range(0, len(records), 1000):
        batch = records[start : start + 1000]
        expected = whole.process(batch, lambda keys: {}, 0)
        prepared = pieces.begin(0)
        at = 0
        while at < len(batch):
            step = splits.choice([1, 7, 50, 333])
            pieces.prepare_more(prepared, batch[at : at + step])
            at += step
        got = pieces.complete(pieces.finish(prepared), {})
        assert got.rows == expected.rows and got.clocks == expected.clocks
        assert got.counts == expected.counts and got.dead_letters == expected.dead_letters
        whole.mark_durable(expected)
        pieces.mark_durable(got)
        compared += sum(len(rows) for rows in got.rows.values())
    assert compared > 2000  # the whole stream was compared, not empty batches
