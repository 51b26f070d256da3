"""Model cost tables: match a model name, pick a pricing tier, and price usage exactly.

Matching follows Langfuse: regex search with the pattern's own anchors and ``(?i)``; a project's own models
beat the defaults; within one scope the newest start date wins (undated last). Prices are per unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any

import msgspec
import orjson

# ClickHouse Decimal64(12): at most 18 digits, 12 of them after the point.
DECIMAL_LIMIT = Decimal("999999.999999999999")
DECIMAL_QUANTUM = Decimal("0.000000000001")


@dataclass(frozen=True, slots=True)
class UsageCondition:
    usage_pattern: str
    op: str
    value: Decimal
    case_sensitive: bool = False

    def matches(self, usage: dict[str, int]) -> bool:
        try:
            pattern = re.compile(self.usage_pattern, 0 if self.case_sensitive else re.IGNORECASE)
        except re.error:
            return False
        total = sum(units for key, units in usage.items() if pattern.search(key))
        return _COMPARE[self.op](Decimal(total), self.value)


_COMPARE = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


@dataclass(frozen=True, slots=True)
class PricingTier:
    id: str
    name: str
    priority: int
    is_default: bool
    conditions: tuple[UsageCondition, ...]
    prices: dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    match: str
    project_id: str | None
    start_date: datetime | None
    tokenizer: dict[str, Any] | None
    tiers: tuple[PricingTier, ...]
    pattern: re.Pattern[str]

    def tier_for(self, usage: dict[str, int]) -> PricingTier | None:
        """The first non-default tier (by priority) whose conditions all hold, else the default tier."""
        if not usage:
            return None
        for tier in self.tiers:
            if not tier.is_default and tier.conditions and all(c.matches(usage) for c in tier.conditions):
                return tier
        return next((tier for tier in self.tiers if tier.is_default), None)


def model_from_dict(raw: dict[str, Any], project_id: str | None = None) -> Model:
    tiers = tuple(
        PricingTier(
            id=tier["id"],
            name=tier["name"],
            priority=int(tier["priority"]),
            is_default=bool(tier["default"]),
            conditions=tuple(
                UsageCondition(c["usage_pattern"], c["op"], Decimal(str(c["value"])), c.get("case_sensitive", False))
                for c in tier["conditions"]
            ),
            prices={key: Decimal(str(price)) for key, price in tier["prices"].items()},
        )
        for tier in sorted(raw["tiers"], key=lambda t: t["priority"])
    )
    start = raw.get("start_date")
    return Model(
        id=raw["id"],
        name=raw["name"],
        match=raw["match"],
        project_id=raw.get("project_id", project_id),
        start_date=datetime.fromisoformat(start) if start else None,
        tokenizer=raw.get("tokenizer"),
        tiers=tiers,
        pattern=re.compile(raw["match"]),
    )


class ModelTable:
    """Default models plus project-specific ones, with cached matches."""

    def __init__(self, models: list[Model]) -> None:
        # Project models first, then newest start date first, undated last: the first hit wins.
        def rank(model: Model) -> tuple[int, float]:
            start = -model.start_date.timestamp() if model.start_date else float("inf")
            return (0 if model.project_id else 1, start)

        self._models = sorted(models, key=rank)
        self._cache: dict[tuple[str, str], Model | None] = {}

    @classmethod
    def default(cls) -> ModelTable:
        raw = orjson.loads(resources.files("pipeline.models").joinpath("default_models.json").read_bytes())
        return cls([model_from_dict(entry) for entry in raw["models"]])

    @property
    def models(self) -> list[Model]:
        return list(self._models)

    def match(self, project_id: str, model_name: str) -> Model | None:
        key = (project_id, model_name)
        if key not in self._cache:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = next(
                (
                    model
                    for model in self._models
                    if model.project_id in (None, project_id) and model.pattern.search(model_name)
                ),
                None,
            )
        return self._cache[key]


def clamp_decimal(value: Decimal) -> Decimal:
    """Fit a cost into Decimal64(12): non-finite or out-of-range values are clamped, like Langfuse's writer."""
    if not value.is_finite():
        return -DECIMAL_LIMIT if value.is_signed() else DECIMAL_LIMIT
    if value >= Decimal(1_000_000):
        return DECIMAL_LIMIT
    if value <= Decimal(-1_000_000):
        return -DECIMAL_LIMIT
    return value.quantize(DECIMAL_QUANTUM, rounding=ROUND_HALF_EVEN)


class Costs(msgspec.Struct, frozen=True, gc=False):
    details: dict[str, Decimal]
    total: Decimal | None


def provided_costs(provided: dict[str, float]) -> Costs:
    """Provided costs win entirely; the total is derived only from input and output."""
    details = {key: clamp_decimal(Decimal(str(value))) for key, value in provided.items()}
    total = details.get("total")
    if total is None and details and set(details) <= {"input", "output"}:
        total = clamp_decimal(sum(details.values(), Decimal(0)))
        details["total"] = total
    return Costs(details, total)


def computed_costs(tier: PricingTier | None, usage: dict[str, int]) -> Costs:
    """units x price for every usage key with exactly that price key."""
    if tier is None:
        return Costs({}, None)
    details = {key: tier.prices[key] * units for key, units in usage.items() if key in tier.prices}
    if not details:
        return Costs({}, None)
    if "total" not in details:
        details["total"] = sum(details.values(), Decimal(0))
    clamped = {key: clamp_decimal(value) for key, value in details.items()}
    return Costs(clamped, clamped["total"])
