"""Tool definitions and calls (``pipeline/transforms/tools.py``) against Langfuse v3.225.4's behaviour.

``data/tool_cases.json`` holds the inputs and the column values of every case of Langfuse's own test file for
the feature (``worker/src/__tests__/extractToolsBackend.test.ts``), recorded from its code; the tests here feed
them through our stage as the row builder does (stored input, output and metadata are strings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.transforms.normalize import stringify
from pipeline.transforms.tools import tool_columns
from tests.unit.helpers import envelope, merged, through_storage

CASES = json.loads((Path(__file__).parent / "data" / "tool_cases.json").read_text())["cases"]


def _stored(value: Any) -> str | None:
    return None if value is None else stringify(value)


def _run(case: dict[str, Any]) -> Any:
    metadata = {key: stringify(value) for key, value in (case["metadata"] or {}).items()}
    return tool_columns(_stored(case["input"]), _stored(case["output"]), metadata)


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{case['name'][:60]}" for n, case in enumerate(CASES)])
def test_langfuse_tool_cases(case):
    columns = _run(case)
    expect = case["expect"]
    assert columns.definitions == expect["tool_definitions"]
    assert columns.calls == expect["tool_calls"]
    assert columns.call_names == expect["tool_call_names"]
    if "input" in expect:  # metadata normalisation: where the definitions went, what metadata keeps
        stored_input = _stored(expect["input"])
        assert columns.input == (stored_input if isinstance(expect["input"], dict) else _stored(case["input"]))
        assert columns.metadata == {key: stringify(value) for key, value in (expect["metadata"] or {}).items()}


def test_keeps_observation_metadata_values_stringified_after_moving_tool_definitions_to_input():
    # IngestionService.unit.test.ts: the stored metadata keeps the other attributes, as a string.
    tool = {"type": "function", "name": "get_weather", "description": "Get weather."}
    body = {
        "id": "g",
        "input": [{"role": "user", "content": "Need weather"}],
        "metadata": {"attributes": {"ai.prompt.tools": [tool], "custom.attribute": "keep-me"}},
    }
    row = next(row for key, row in merged([envelope("generation-create", body)]).items() if key[0] == "observation")
    assert row["metadata"] == {"attributes": '{"custom.attribute":"keep-me"}'}
    assert orjson.loads(row["input"]) == {"messages": [{"role": "user", "content": "Need weather"}], "tools": [tool]}
    assert row["tool_definitions"] == {"get_weather": '{"description":"Get weather.","parameters":""}'}


def test_anthropic_input_schema_is_not_a_parameters_key_and_string_parameters_are_encoded_again():
    columns = tool_columns(
        orjson.dumps(
            {"tools": [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b", "parameters": "{}"}]}
        ).decode(),
        None,
        {},
    )
    assert columns.definitions == {
        "a": '{"description":"","parameters":""}',
        "b": '{"description":"","parameters":"\\"{}\\""}',
    }


def test_calls_without_ids_are_deduplicated_by_name_and_arguments():
    output = {"tool_calls": [{"name": "a", "arguments": "{}", "index": 0}] * 2 + [{"name": "a", "arguments": "{}1"}]}
    columns = tool_columns(None, orjson.dumps(output).decode(), {})
    assert columns.call_names == ["a", "a"]
    assert columns.calls == [
        '{"id":"","arguments":"{}","type":"","index":0}',
        '{"id":"","arguments":"{}1","type":"","index":0}',
    ]


def test_text_that_mentions_no_tool_is_left_alone_without_parsing():
    columns = tool_columns('{"a": 1,', "plain answer", {"k": "v"})
    assert (columns.input, columns.metadata, columns.definitions, columns.calls) == ('{"a": 1,', {"k": "v"}, {}, [])


def test_tools_moved_from_metadata_stay_moved_whatever_the_batching():
    # The create carries AI SDK tool definitions in metadata; a later update replaces the input. Through storage
    # (a fresh worker for every event, the stored row in between) the row must equal the one-batch merge.
    tool = {"type": "function", "name": "lookup", "description": "Look up.", "inputSchema": {"type": "object"}}
    create = envelope(
        "generation-create",
        {"id": "g", "input": "first", "metadata": {"attributes": {"ai.prompt.tools": [tool], "x": 1}}},
        ts="2024-01-01T00:00:00.000Z",
        event_id="a",
    )
    update = envelope(
        "generation-update",
        {"id": "g", "input": [{"role": "user", "content": "second"}], "output": {"tool_calls": [tool | {"id": "c1"}]}},
        ts="2024-01-01T00:00:01.000Z",
        event_id="b",
    )
    one_batch = next(row for key, row in merged([create, update]).items() if key[0] == "observation")
    stored = through_storage([create, update])
    for column in ("input", "metadata", "tool_definitions", "tool_calls", "tool_call_names"):
        assert stored[column] == one_batch[column], column
    assert one_batch["tool_definitions"] == {
        "lookup": '{"description":"Look up.","parameters":"{\\"type\\":\\"object\\"}"}'
    }
