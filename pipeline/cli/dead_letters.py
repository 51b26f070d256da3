"""``lfpipe dead-letters``: list dead letters with their reasons, and replay them after a fix."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.common import console, endpoints_or_fail, progress_bar, settings_from_env
from pipeline.outcomes import REASON_KINDS

group = typer.Typer(help="Inspect dead letters and replay them after a fix.", no_args_is_help=True)
KindOption = Annotated[str | None, typer.Option("--kind", help=f"Reason kind: {REASON_KINDS}.")]
ContainsOption = Annotated[str | None, typer.Option("--contains", help="Only reasons containing this text.")]


@group.command("list")
def dead_letters_list(
    kind: KindOption = None,
    contains: ContainsOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (counts cover all).")] = 50,
    output: Annotated[str, typer.Option("--format", help="table or json (one object per line).")] = "table",
) -> None:
    """Dead letters with their reasons, and counts by reason kind."""
    from pipeline.operations.dead_letters import LetterFilter, collect_letters

    settings = settings_from_env()
    bootstrap = endpoints_or_fail(settings).kafka_bootstrap
    shown, kinds = asyncio.run(
        collect_letters(bootstrap, settings.topic("ingestion-deadletter"), LetterFilter(kind, contains), limit)
    )
    if output == "json":
        sys.stdout.write("".join(orjson.dumps(letter.summary()).decode() + "\n" for letter in shown))
    else:
        table = Table("time (UTC)", "kind", "key", "reason", title=f"dead letters ({sum(kinds.values())})")
        for letter in shown:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.timestamp_ms / 1000))
            table.add_row(at, letter.kind, (letter.key or b"").decode(errors="replace")[:40], letter.reason[:200])
        Console().print(table)
    for name, count in kinds.most_common():
        console.print(f"{name}: {count}")


@group.command("replay")
def dead_letters_replay(
    kind: KindOption = None,
    contains: ContainsOption = None,
    from_beginning: Annotated[
        bool, typer.Option(help="Replay every letter, not only those since the last replay.")
    ] = False,
) -> None:
    """Send dead letters back to the ingestion topic (original key, value and headers) after a fix."""
    from pipeline.operations.dead_letters import LetterFilter, replay_matching

    settings = settings_from_env()
    topics = (settings.topic("ingestion-deadletter"), settings.topic("ingestion"))
    group_name = f"{settings.consumer_group}-deadletter-replay"
    with progress_bar("replaying dead letters") as progress:
        task = progress.add_task("replay", total=None)
        count = asyncio.run(
            replay_matching(
                endpoints_or_fail(settings),
                topics,
                group_name,
                LetterFilter(kind, contains),
                from_beginning,
                lambda _: progress.advance(task),
            )
        )
    console.print(f"replayed {count} dead letters to {settings.topic('ingestion')}")
