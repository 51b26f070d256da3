"""What every ``lfpipe`` command shares: settings from the environment, the endpoints, how to fail, progress
bars, and the options several commands take."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

import typer
from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


def progress_bar(label: str) -> Progress:
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


def iso_ms(value: str | None) -> int | None:
    """An ISO time option as epoch milliseconds (a time without a zone is the machine's local time)."""
    if value is None:
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        fail(f"{value!r} is not an ISO time (for example 2026-01-31T12:00:00+00:00)")


def exclusive_clickhouse(settings: Settings, role: str) -> Client:
    """ClickHouse for a command that writes: with embedded chDB, only while no worker holds the folder."""
    from pipeline.stores.clickhouse import ChdbBusy, connect

    try:
        return connect(settings.clickhouse_dsn, role)
    except ChdbBusy as exc:
        fail(f"{exc}; stop the worker first (embedded chDB allows one process), or use a ClickHouse server")
