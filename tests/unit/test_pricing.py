"""Model matching, pricing tiers and cost (study section 2, conformance items 20-25, 27, 29, 36)."""

from decimal import Decimal

import pytest

from pipeline.transforms.enrich import enrich_observation, usage_with_total
from pipeline.transforms.pricing import ModelTable, clamp_decimal, model_from_dict

MODELS = ModelTable.default()


def test_gpt_4o_mini_cost_matches_the_reference_example():
    result = enrich_observation(MODELS, "p", "gpt-4o-mini", {"input": 1295, "output": 18}, None)
    assert result.cost_details == {
        "input": Decimal("0.00019425"),
        "output": Decimal("0.0000108"),
        "total": Decimal("0.00020505"),
    }
    assert result.total_cost == Decimal("0.00020505")


def test_provided_costs_win_entirely_even_when_zero():
    result = enrich_observation(MODELS, "p", "gpt-4o-mini", {"input": 1295, "output": 18}, {"input": 0.0})
    assert result.cost_details == {"input": Decimal(0), "total": Decimal(0)}


def test_provided_input_and_output_costs_sum_to_the_total():
    result = enrich_observation(
        MODELS, "p", None, {"input": 1285, "output": 513}, {"input": 0.0006425, "output": 0.0007695}
    )
    assert result.total_cost == Decimal("0.001412")


def test_total_is_the_sum_of_every_provided_key():
    assert usage_with_total({"input": 1, "cached": 2, "reasoning": 3}) == {
        "input": 1,
        "cached": 2,
        "reasoning": 3,
        "total": 6,
    }
    assert usage_with_total({"input": 2}) == {"input": 2, "total": 2}


def test_embedding_priced_by_total_only():
    result = enrich_observation(MODELS, "p", "text-embedding-3-small", {"input": 1000}, None)
    # price list: text-embedding-3-small total 2e-8 per token
    assert result.total_cost == Decimal("0.00002")
    assert result.cost_details == {"total": Decimal("0.00002")}


def test_unmatched_model_keeps_usage_and_has_no_cost():
    result = enrich_observation(MODELS, "p", "my-own-model", {"input": 5}, None)
    assert (result.internal_model_id, result.total_cost, result.usage_details) == (None, None, {"input": 5, "total": 5})


@pytest.mark.parametrize("name", ["GPT-4o", "openai/gpt-4o", "gpt-4o"])
def test_match_is_case_insensitive_with_provider_prefix(name):
    assert MODELS.match("p", name).name == "gpt-4o"


def test_project_model_beats_the_default():
    own = model_from_dict(
        {
            "id": "mine",
            "name": "gpt-4o",
            "match": "(?i)^gpt-4o$",
            "project_id": "p",
            "tiers": [
                {
                    "id": "d",
                    "name": "Standard",
                    "priority": 0,
                    "default": True,
                    "conditions": [],
                    "prices": {"input": "1"},
                }
            ],
        }
    )
    table = ModelTable([*MODELS.models, own])
    assert table.match("p", "gpt-4o").id == "mine"
    assert table.match("other", "gpt-4o").id != "mine"


def test_newest_start_date_wins_regardless_of_observation_time():
    def dated(model_id: str, start: str) -> object:
        return model_from_dict(
            {
                "id": model_id,
                "name": "m",
                "match": "^m$",
                "start_date": start,
                "tiers": [
                    {"id": "d", "name": "S", "priority": 0, "default": True, "conditions": [], "prices": {"input": "1"}}
                ],
            }
        )

    table = ModelTable([dated("old", "2020-01-01T00:00:00+00:00"), dated("new", "2021-01-01T10:00:00+00:00")])
    assert table.match("p", "m").id == "new"


@pytest.mark.parametrize(
    ("input_tokens", "tier"),
    [(1000, "Standard"), (200_000, "Standard"), (200_001, "Large Context")],
)
def test_large_context_tier_above_200k_input(input_tokens, tier):
    result = enrich_observation(MODELS, "p", "claude-sonnet-4-5", {"input": input_tokens, "output": 10}, None)
    assert result.pricing_tier_name == tier


def test_tier_condition_sums_every_matching_usage_key():
    # 150k input + 60k input_cached_tokens: pattern "input" sums both, so above 200k.
    result = enrich_observation(
        MODELS, "p", "claude-sonnet-4-5", {"input": 150_000, "input_cached_tokens": 60_000}, None
    )
    assert result.pricing_tier_name == "Large Context"
    assert result.cost_details["input"] == Decimal("0.9")  # 150000 x 6e-6


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("2000000"), Decimal("999999.999999999999")),
        (Decimal("-1e7"), Decimal("-999999.999999999999")),
        (Decimal("Infinity"), Decimal("999999.999999999999")),
        (Decimal("0.1234567890123456"), Decimal("0.123456789012")),
    ],
)
def test_costs_are_clamped_to_decimal64_12(value, expected):
    assert clamp_decimal(value) == expected
