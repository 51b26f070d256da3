"""Usage and cost for an observation's merged state: model match, usage totals, pricing tier, cost."""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec

from pipeline.transforms.merge import EntityState, stored_metadata
from pipeline.transforms.normalize import capped_sum
from pipeline.transforms.pricing import Costs, ModelTable, clamp_decimal, computed_costs, provided_costs
from pipeline.transforms.tokenize import count_tokens
from pipeline.transforms.tools import ToolColumns, tool_columns


class Enrichment(msgspec.Struct, frozen=True, gc=False):
    usage_details: dict[str, int]
    cost_details: dict[str, Decimal]
    total_cost: Decimal | None
    internal_model_id: str | None
    pricing_tier_id: str | None
    pricing_tier_name: str | None
    tokenizer_seconds: float = 0.0  # time spent counting tokens, for the worker's metric


class Enriched(msgspec.Struct, frozen=True, gc=False):
    """What an observation's row derives from its merged state: tools, then usage and cost."""

    tools: ToolColumns
    usage: Enrichment
    level: str
    provided_usage: dict[str, int]
    provided_cost: dict[str, Decimal]


def enrich_state(state: EntityState, models: ModelTable) -> Enriched:
    """The enrichment stage for one merged observation. Tool definitions move from metadata into the input
    first: everything that reads the input (tokenizing included) reads it as it will be stored."""
    value = state.value
    level = value("level") or "DEFAULT"
    provided_usage = value("provided_usage_details") or {}
    provided_cost = value("provided_cost_details") or {}
    tools = tool_columns(value("input"), value("output"), stored_metadata(state))
    usage = enrich_observation(
        models,
        state.project_id,
        value("provided_model_name"),
        provided_usage,
        provided_cost,
        observation_type=value("type"),
        level=level,
        input_text=tools.input,
        output_text=value("output"),
    )
    costs = {key: clamp_decimal(Decimal(str(cost))) for key, cost in provided_cost.items()}
    return Enriched(tools, usage, level, provided_usage, costs)


def usage_with_total(provided: dict[str, int]) -> dict[str, int]:
    """When usage is given without a total, the total is the sum of every key (cache buckets included)."""
    if not provided or "total" in provided:
        return dict(provided)
    return {**provided, "total": capped_sum(provided.values())}


TOKENIZED_TYPES = frozenset({"GENERATION", "EMBEDDING"})


def tokenized_usage(tokenizer: dict | None, input_text: str | None, output_text: str | None) -> dict[str, int]:
    """{input, output, total} from token counts, keeping only the parts that could be counted."""
    usage = {
        name: count
        for name, text in (("input", input_text), ("output", output_text))
        if (count := count_tokens(tokenizer, text)) is not None
    }
    if usage:
        usage["total"] = capped_sum(usage.values())
    return usage


def enrich_observation(
    models: ModelTable,
    project_id: str,
    model_name: str | None,
    provided_usage: dict[str, int] | None,
    provided_cost: dict[str, float] | None,
    observation_type: str = "GENERATION",
    level: str = "DEFAULT",
    input_text: str | None = None,
    output_text: str | None = None,
) -> Enrichment:
    model = models.match(project_id, model_name) if model_name else None
    usage = usage_with_total(provided_usage or {})
    tokenizer_seconds = 0.0
    if model is not None and not usage and level != "ERROR" and observation_type in TOKENIZED_TYPES:
        started = time.perf_counter()
        usage = tokenized_usage(model.tokenizer, input_text, output_text)
        tokenizer_seconds = time.perf_counter() - started
    tier = model.tier_for(usage) if model else None
    if provided_cost:
        costs = provided_costs(provided_cost)
    elif tier is not None:
        costs = computed_costs(tier, usage)
    else:
        costs = Costs({}, None)
    return Enrichment(
        usage_details=usage,
        cost_details=costs.details,
        total_cost=costs.total,
        internal_model_id=model.id if model else None,
        pricing_tier_id=tier.id if tier else None,
        pricing_tier_name=tier.name if tier else None,
        tokenizer_seconds=tokenizer_seconds,
    )
