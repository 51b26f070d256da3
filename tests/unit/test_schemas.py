"""The published JSON Schemas and the worker's validation agree on every example."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipeline.runtime.processor import TAKEN_ASIDE
from pipeline.transforms.catalog import Catalog
from pipeline.transforms.fields import InvalidEvent, fields_of
from pipeline.transforms.validate import Rejected, parse_event

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*/*.json"))


def _validator() -> Draft202012Validator:
    registry = Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text()))) for path in SCHEMAS.glob("*.schema.json")
    )
    return Draft202012Validator(registry.contents("envelope.schema.json"), registry=registry)


VALIDATOR = _validator()
# Configs referenced by the examples: whether a configId exists is a run-time fact no schema can state.
CATALOG = Catalog([])
CATALOG.apply(
    "score-config/7a88fb47-b4e2-43b8-a06c-a5ce950dc53a/cfg-sentiment-v2",
    {
        "name": "sentiment",
        "data_type": "CATEGORICAL",
        "categories": [{"label": "negative", "value": 0}, {"label": "positive", "value": 1}],
    },
)


def _worker_accepts(raw: bytes) -> bool:
    outcome = parse_event(raw, 5_000_000)
    if isinstance(outcome, Rejected):
        return False
    try:
        if outcome is not None and outcome.entity not in TAKEN_ASIDE:  # deletions and uploads map to no record
            fields_of(outcome, CATALOG.score_config)
    except InvalidEvent:
        return False
    return True


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_schema_and_worker_agree(path):
    expected_valid = path.parent.name == "valid"
    raw = path.read_bytes()
    assert VALIDATOR.is_valid(json.loads(raw)) is expected_valid
    assert _worker_accepts(raw) is expected_valid


def test_there_are_examples_for_every_event_type():
    types = {json.loads(p.read_text())["type"] for p in EXAMPLES if p.parent.name == "valid"}
    assert len(types) == 19
