"""``lfpipe topics apply`` and ``lfpipe migrate``: the Kafka topics and the ClickHouse schema a pipeline needs."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from pipeline.cli.common import console, endpoints_or_fail, exclusive_clickhouse, settings_from_env

group = typer.Typer(help="Topics declared in topics/topics.toml.", no_args_is_help=True)


@group.command("apply")
def topics_apply(
    replication_factor: Annotated[
        int | None,
        typer.Option(help="Override topics.toml's (1); 3 or more adds min.insync.replicas=2."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the topic settings instead of applying them.")] = False,
) -> None:
    """Create missing topics and report drift; running it twice changes nothing."""
    from pipeline.operations.topics import apply_topics, describe, load_topic_specs, with_replication

    settings = settings_from_env()
    specs = load_topic_specs(settings.topic_prefix)
    if replication_factor is not None:
        specs = with_replication(specs, replication_factor)
    if dry_run:
        sys.stdout.write("".join(describe(spec) + "\n" for spec in specs.values()))
        return
    report = asyncio.run(apply_topics(endpoints_or_fail(settings).kafka_bootstrap, specs))
    for name in report.created:
        console.print(f"[green]created[/green] {name}")
    for name in report.unchanged:
        console.print(f"unchanged {name}")
    for line in report.drift:
        console.print(f"[yellow]drift[/yellow] {line}")


def migrate(
    cluster: Annotated[
        str | None,
        typer.Option(help="Print the variant for this cluster (Replicated, ON CLUSTER, Distributed)."),
    ] = None,
) -> None:
    """Apply pending ClickHouse migrations (schemas/clickhouse/migrations) and record them."""
    from pipeline.schema.cluster import cluster_script
    from pipeline.schema.migrations import load_migrations
    from pipeline.schema.migrations import migrate as run_migrations

    if cluster is not None:
        sys.stdout.write(cluster_script(load_migrations(), cluster))
        return
    applied, problems = run_migrations(exclusive_clickhouse(settings_from_env(), "migrate"))
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    for problem in problems:
        console.print(f"[yellow]warning[/yellow] {problem}")
    if problems:
        raise typer.Exit(1)
