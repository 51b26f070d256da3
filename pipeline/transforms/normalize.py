"""Langfuse's silent repairs: environment names, metadata shapes, usage and cost forms."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson

# Usage maps are Map(..., UInt64) in ClickHouse: larger counts are invalid numbers and dropped like negatives.
UINT64_MAX = 2**64 - 1
_ENVIRONMENT_PREFIX = re.compile(r"^langfuse[-_]?")
_ENVIRONMENT_VALID = re.compile(r"^[a-z0-9\-_]+$")
_OPENAI_COMPLETION_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})
_OPENAI_RESPONSES_KEYS = frozenset({"input_tokens", "output_tokens", "total_tokens"})


def normalize_environment(value: Any) -> str:
    """Lower-case, strip a ``langfuse`` prefix, cut to 40 characters; anything else invalid is "default"."""
    if not value or not isinstance(value, str):
        return "default"
    return _environment(value)


@lru_cache(maxsize=1024)
def _environment(value: str) -> str:
    name = _ENVIRONMENT_PREFIX.sub("", value.lower())[:40]
    return name if _ENVIRONMENT_VALID.match(name) else "default"


def stringify(value: Any) -> str:
    """JSON.stringify for non-strings; strings stay as they are."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def metadata_fields(value: Any) -> dict[str, Any] | None:
    """A primitive becomes {metadata: str}, an array {metadata: json}; objects pass; null means none."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"metadata": stringify(value)}
    if isinstance(value, bool):
        return {"metadata": "true" if value else "false"}
    return {"metadata": str(value)}


def _non_negative_int(value: Any) -> int | None:
    number: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        # parseInt semantics: leading digits count, so "12abc" is 12.
        match = re.match(r"^\s*([+-]?[0-9]+)", value)
        number = int(match.group(1)) if match else None
    return number if number is not None and 0 <= number <= UINT64_MAX else None


def _openai_details(usage: dict[str, Any], base_key: str, details_key: str, prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    base = _non_negative_int(usage.get(base_key))
    details = usage.get(details_key)
    if base is not None:
        out[prefix] = base
    if isinstance(details, dict):
        for key, raw in details.items():
            count = _non_negative_int(raw)
            if count is None:
                continue
            out[f"{prefix}_{key}"] = count
            if prefix in out:
                out[prefix] = max(out[prefix] - count, 0)
    return out


def usage_details(value: Any) -> dict[str, int] | None:
    """``usageDetails`` in any accepted form to a flat {usage type: non-negative int}; empty is None."""
    if not isinstance(value, dict) or not value:
        return None
    keys = value.keys()
    if "prompt_tokens" in keys and keys & _OPENAI_COMPLETION_KEYS:
        out = _openai_details(value, "prompt_tokens", "prompt_tokens_details", "input")
        out |= _openai_details(value, "completion_tokens", "completion_tokens_details", "output")
        total = _non_negative_int(value.get("total_tokens"))
    elif "input_tokens" in keys and keys & _OPENAI_RESPONSES_KEYS:
        out = _openai_details(value, "input_tokens", "input_tokens_details", "input")
        out |= _openai_details(value, "output_tokens", "output_tokens_details", "output")
        total = _non_negative_int(value.get("total_tokens"))
    else:
        out = {}
        for key, raw in value.items():
            # Raw records keep non-negative integers and numeric strings; floats and the rest are dropped.
            numeric = isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit())
            count = _non_negative_int(raw) if numeric else None
            if count is not None:
                out[str(key)] = count
        total = None
    if total is not None:
        out["total"] = total
    return out or None


def capped_sum(counts: Any) -> int:
    """A total that still fits UInt64."""
    return min(sum(counts), UINT64_MAX)


def legacy_usage(value: Any) -> tuple[dict[str, int], dict[str, float], bool]:
    """Legacy ``usage`` ({input, output, total, *Cost} or promptTokens...) to usage and cost maps, and whether it
    named a total (even one that is then dropped as invalid: Langfuse derives a total only when none was sent)."""
    if not isinstance(value, dict):
        return {}, {}, False
    if any(value.get(key) is not None for key in ("promptTokens", "completionTokens", "totalTokens")):
        value = {
            "input": value.get("promptTokens"),
            "output": value.get("completionTokens"),
            "total": value.get("totalTokens"),
        }
    usage = {k: n for k in ("input", "output", "total") if (n := _non_negative_int(value.get(k))) is not None}
    costs = {
        name: float(raw)
        for name, key in (("input", "inputCost"), ("output", "outputCost"), ("total", "totalCost"))
        if isinstance(raw := value.get(key), int | float) and not isinstance(raw, bool) and raw >= 0
    }
    return usage, costs, value.get("total") is not None


def cost_details(value: Any) -> dict[str, float] | None:
    if not isinstance(value, dict):
        return None
    out = {
        str(k): float(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
    }
    return out or None


def provided_usage_and_cost(
    usage: Any, details: Any, costs: Any
) -> tuple[dict[str, int] | None, dict[str, float] | None]:
    """Langfuse's provided_usage_details / provided_cost_details for one observation event."""
    legacy_units, legacy_costs, total_given = legacy_usage(usage)
    detail_units = usage_details(details)
    units = dict(legacy_units)
    if not total_given and not detail_units:
        if "input" in units and "output" in units:
            units["total"] = capped_sum((units["input"], units["output"]))
        elif "input" in units or "output" in units:
            units["total"] = units.get("input", units.get("output", 0))
    if detail_units:
        units |= detail_units
    cost = dict(legacy_costs)
    detail_costs = cost_details(costs)
    if detail_costs:
        cost |= detail_costs
    return units or None, cost or None
