import pytest

from pipeline.transforms.normalize import (
    metadata_fields,
    normalize_environment,
    provided_usage_and_cost,
    usage_details,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Production", "production"),
        ("langfuse-test", "test"),
        ("langfuse_eval", "eval"),
        (".invalidcharacter!", "default"),
        ("a" * 50, "a" * 40),
        (None, "default"),
        ("", "default"),
    ],
)
def test_environment_rules(given, expected):
    assert normalize_environment(given) == expected


def test_openai_completion_usage_subtracts_details_from_the_base():
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 1,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 3},
    }
    assert usage_details(usage) == {
        "input": 0,
        "input_cached_tokens": 2,
        "input_audio_tokens": 3,
        "output": 1,
        "total": 6,
    }


def test_openai_responses_usage_maps_to_input_and_output():
    usage = {
        "input_tokens": 10,
        "output_tokens": 20,
        "total_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 5},
    }
    assert usage_details(usage) == {"input": 10, "output": 15, "output_reasoning_tokens": 5, "total": 30}


def test_null_detail_counts_are_ignored():
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 1,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": None},
    }
    assert usage_details(usage) == {"input": 5, "output": 1, "total": 6}


def test_raw_usage_drops_floats_and_negatives_and_parses_numeric_strings():
    assert usage_details({"input": 1.5, "output": -7, "cached": "12", "reasoning": 3}) == {"cached": 12, "reasoning": 3}


def test_empty_usage_is_none():
    assert usage_details({}) is None
    assert provided_usage_and_cost(None, None, None) == (None, None)


def test_legacy_usage_total_is_derived_and_costs_are_mapped():
    usage, cost = provided_usage_and_cost(
        {"input": 1285, "output": 513, "inputCost": 0.0006425, "outputCost": 0.0007695}, None, None
    )
    assert usage == {"input": 1285, "output": 513, "total": 1798}
    assert cost == {"input": 0.0006425, "output": 0.0007695}


def test_usage_details_override_legacy_usage_key_by_key():
    usage, _ = provided_usage_and_cost({"input": 1, "output": 2}, {"input": 10}, None)
    assert usage == {"input": 10, "output": 2}


def test_openai_camel_case_legacy_usage():
    usage, _ = provided_usage_and_cost({"promptTokens": 3, "completionTokens": 4, "totalTokens": 7}, None, None)
    assert usage == {"input": 3, "output": 4, "total": 7}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("plain", {"metadata": "plain"}),
        (12, {"metadata": "12"}),
        ([1, "a"], {"metadata": '[1,"a"]'}),
        ({"k": "v"}, {"k": "v"}),
        (None, None),
    ],
)
def test_metadata_shapes(given, expected):
    assert metadata_fields(given) == expected
