"""``lfpipe``: the operator's command line. One module per command group; a command reads its arguments,
calls the module that owns the work, and prints the result."""

from __future__ import annotations

import typer

from pipeline.cli import data, dead_letters, demo, dev, gateway, load, models, run, topics

app = typer.Typer(
    help="Kafka -> Faust -> ClickHouse ingestion pipeline for Langfuse-style events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev.group, name="dev")
app.add_typer(topics.group, name="topics")
app.command("migrate")(topics.migrate)
app.command("worker")(run.worker)
app.command("produce")(run.produce)
app.command("gateway")(gateway.gateway)
app.add_typer(gateway.keys, name="keys")
app.add_typer(models.group, name="models")
app.add_typer(models.score_configs, name="score-configs")
app.add_typer(load.group, name="load")
app.add_typer(dead_letters.group, name="dead-letters")
app.command("rebuild")(data.rebuild)
app.add_typer(data.retention, name="retention")
app.command("query")(data.query)
app.command("demo")(demo.demo)


def main() -> None:
    app()
