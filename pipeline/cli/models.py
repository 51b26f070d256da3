"""``lfpipe models`` and ``lfpipe score-configs``: run-time reference data on the compacted config topic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import console, endpoints_or_fail, fail, settings_from_env
from pipeline.transforms.catalog import Catalog, model_key, score_config_key

group = typer.Typer(help="Model cost tables: defaults plus run-time models on the config topic.", no_args_is_help=True)
score_configs = typer.Typer(help="Score configs on the config topic.", no_args_is_help=True)


def _catalog() -> Catalog:
    from pipeline.sources.config_feed import read_catalog

    settings = settings_from_env()
    return asyncio.run(read_catalog(endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config")))


def _publish(key: str, value: dict[str, Any] | None) -> None:
    from pipeline.sources.config_feed import publish_config

    settings = settings_from_env()
    asyncio.run(publish_config(endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config"), key, value))


@group.command("list")
def models_list(project: Annotated[str | None, typer.Option(help="Show what this project sees.")] = None) -> None:
    """Models in effect (project models first, then defaults), with default-tier prices per unit."""
    table = Table("model", "scope", "match", "tokenizer", "tiers", "input", "output")
    for model in _catalog().model_table.models:
        if model.project_id not in (None, project):
            continue
        default = next((t for t in model.tiers if t.is_default), None)
        prices = default.prices if default else {}
        table.add_row(
            model.name,
            model.project_id or "default",
            model.match,
            (model.tokenizer or {}).get("id", ""),
            str(len(model.tiers)),
            str(prices.get("input", "")),
            str(prices.get("output", "")),
        )
    Console().print(table)


@group.command("add")
def models_add(
    file: Annotated[
        Path, typer.Argument(help="A model as JSON (format of pipeline/models/default_models.json).", exists=True)
    ],
    project: Annotated[str | None, typer.Option(help="Only for this project (default: every project).")] = None,
) -> None:
    """Add or replace a model; every worker applies it to its next batch."""
    from pipeline.transforms.pricing import model_from_dict

    raw = orjson.loads(file.read_bytes())
    try:
        model = model_from_dict(raw, project)
    except (KeyError, ValueError, TypeError) as exc:
        fail(f"{file} is not a valid model: {exc!r}")
    key = model_key(project, model.id)
    _publish(key, raw)
    console.print(f"model {model.name!r} published as {key}")


@group.command("remove")
def models_remove(
    model_id: Annotated[str, typer.Argument(help="The model's id.")],
    project: Annotated[str | None, typer.Option(help="The project it was added for.")] = None,
) -> None:
    """Remove a model added with `models add`."""
    key = model_key(project, model_id)
    _publish(key, None)
    console.print(f"removed {key}")


@group.command("test")
def models_test(
    name: Annotated[str, typer.Argument(help="A model name as producers send it.")],
    project: Annotated[str, typer.Option(help="Project to match for.")] = "",
    usage: Annotated[str | None, typer.Option(help='Usage JSON to price, e.g. {"input": 1000}.')] = None,
) -> None:
    """Which model a name matches, and what a usage would cost."""
    from pipeline.transforms.enrich import enrich_observation

    catalog = _catalog()
    model = catalog.model_table.match(project, name)
    if model is None:
        console.print(f"{name!r} matches no model: no cost is computed")
        raise typer.Exit(1)
    console.print(f"{name!r} matches {model.name!r} (id {model.id}, {model.project_id or 'default'}): {model.match}")
    if usage:
        result = enrich_observation(catalog.model_table, project, name, orjson.loads(usage), None)
        console.print(f"tier {result.pricing_tier_name}: cost {result.cost_details}, total {result.total_cost}")


@score_configs.command("add")
def score_configs_add(
    file: Annotated[
        Path, typer.Argument(help="JSON: id, name, data_type, min_value, max_value, categories.", exists=True)
    ],
    project: Annotated[str, typer.Option(help="The project the config belongs to.")],
) -> None:
    """Add or replace a score config (scores reference it by configId)."""
    raw = orjson.loads(file.read_bytes())
    key = score_config_key(project, str(raw.get("id")))
    try:
        Catalog([]).apply(key, raw)
    except Exception as exc:
        fail(f"{file} is not a valid score config: {exc}")
    _publish(key, raw)
    console.print(f"score config published as {key}")
