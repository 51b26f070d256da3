"""What every ``lfpipe`` command shares: settings from the environment, the endpoints, and how to fail."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from pipeline.config import Settings
from pipeline.endpoints import Endpoints, StackNotRunning, resolve

console = Console(stderr=True)


def settings_from_env() -> Settings:
    return Settings()


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def endpoints_or_fail(settings: Settings) -> Endpoints:
    try:
        return resolve(settings)
    except StackNotRunning as exc:
        fail(str(exc))
