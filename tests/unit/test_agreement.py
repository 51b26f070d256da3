"""The fast path and the reference oracle agree on the whole benchmark stream, row for row.

The stream is ``lfpipe load benchmark``'s (agent loops, Dify and RAGFlow runs across 20 projects, images, large
payloads, disorder, duplicates, invalid messages), processed in 5,000-message batches as a worker reads it; the
oracle (``tests/reference.py``) folds every entity's events sequentially, as Langfuse does.
"""

from __future__ import annotations

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
