"""``lfpipe dev``: the local stack (Kafka in KRaft mode and SeaweedFS on 127.0.0.1), from ``devstack``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import console, settings_from_env

group = typer.Typer(help="The local stack: Kafka (KRaft) and SeaweedFS on 127.0.0.1.", no_args_is_help=True)


@group.command("up")
def dev_up(no_s3: Annotated[bool, typer.Option(help="Skip SeaweedFS (archive to a folder).")] = False) -> None:
    """Start Kafka and SeaweedFS (resolving the Kafka jars with Maven on first use)."""
    from devstack.local import stack_up

    settings = settings_from_env()
    with console.status("starting the local stack (first run resolves Kafka jars with Maven)"):
        state = stack_up(settings.stack_dir, with_s3=not no_s3)
    print_status(state)


@group.command("down")
def dev_down() -> None:
    """Stop the servers this stack started (by PID)."""
    from devstack.local import stack_down

    stopped = stack_down(settings_from_env().stack_dir)
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@group.command("status")
def dev_status() -> None:
    """Show what runs, where."""
    from devstack.local import stack_status

    print_status(stack_status(settings_from_env().stack_dir))


def print_status(state: dict[str, Any]) -> None:
    table = Table("service", "pid", "address", "log")
    for name, entry in state.items():
        address = entry.get("bootstrap") or entry.get("endpoint") or ""
        running = entry.get("running", True)
        table.add_row(name, str(entry.get("pid")) if running else "stopped", address, entry.get("log", ""))
    Console().print(table)
