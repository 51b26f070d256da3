"""``lfpipe gateway`` and ``lfpipe keys``: run the Langfuse-compatible HTTP gateway, and manage its API keys
(salted hashes on the config topic, which running gateways follow)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from pipeline.cli.common import console, endpoints_or_fail, fail, settings_from_env
from pipeline.gateway.keys import KeyRing, check_key_text, config_key, make_key, new_key_pair
from pipeline.sources.config_feed import publish_config, read_config
from pipeline.transforms.validate import PROJECT_ID_RULE, valid_project_id

keys = typer.Typer(help="API keys of the gateway (Langfuse key pairs) on the config topic.", no_args_is_help=True)


def gateway(
    bind: Annotated[str | None, typer.Option(help="Address to listen on (default LFPIPE_GATEWAY_BIND).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default LFPIPE_GATEWAY_PORT; 0 picks one).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes sharing the port (default: one per core).")] = None,
) -> None:
    """Serve Langfuse's ingestion API (batch, OTLP, scores, media, projects) and write to Kafka."""
    import os

    from pipeline.gateway.serve import serve

    settings = settings_from_env()
    updates = {"gateway_bind": bind, "gateway_port": port, "gateway_workers": workers}
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    endpoints_or_fail(settings)
    count = settings.gateway_workers or os.cpu_count() or 1
    serve(settings, count)


async def _key_ring(bootstrap: str, topic: str) -> KeyRing:
    ring = KeyRing()
    await read_config(bootstrap, topic, ring.apply)
    return ring


@keys.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="The project the key writes to.")],
    name: Annotated[str, typer.Option(help="A name to tell keys apart.")] = "default",
    public_key: Annotated[str | None, typer.Option(help="Import this public key (with --secret-key).")] = None,
    secret_key: Annotated[str | None, typer.Option(help="Import this secret key (with --public-key).")] = None,
) -> None:
    """Create a key pair for a project, or import an existing Langfuse pair so clients keep their settings."""
    if not valid_project_id(project):
        fail(PROJECT_ID_RULE)
    if (public_key is None) != (secret_key is None):
        fail("--public-key and --secret-key go together")
    generated = public_key is None
    if public_key is None or secret_key is None:
        public_key, secret_key = new_key_pair()
    for value, what in ((public_key, "the public key"), (secret_key, "the secret key")):
        if problem := check_key_text(value, what):
            fail(problem)
    settings = settings_from_env()
    bootstrap, topic = endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config")
    existing = asyncio.run(_key_ring(bootstrap, topic)).keys.get(public_key)
    if existing is not None and existing.project_id != project:
        fail(f"public key {public_key} already belongs to project {existing.project_id}")
    key = make_key(project, public_key, secret_key, name)
    asyncio.run(publish_config(bootstrap, topic, config_key(project, public_key), msgspec.to_builtins(key)))
    console.print(f"key {name!r} for project {project!r} is live on every gateway")
    print(f"LANGFUSE_PUBLIC_KEY={public_key}")
    if generated:
        print(f"LANGFUSE_SECRET_KEY={secret_key}")
        console.print("the secret is shown once: only its salted hash is stored")


@keys.command("list")
def keys_list(project: Annotated[str | None, typer.Option(help="Only this project's keys.")] = None) -> None:
    """Live keys (public key, project, name, created); secrets are never stored."""
    settings = settings_from_env()
    ring = asyncio.run(_key_ring(endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config")))
    table = Table("public key", "project", "name", "created")
    for key in sorted(ring.keys.values(), key=lambda k: (k.project_id, k.created_at)):
        if project is None or key.project_id == project:
            table.add_row(key.public_key, key.project_id, key.name, key.created_at)
    console.print(table)


@keys.command("revoke")
def keys_revoke(public_key: Annotated[str, typer.Argument(help="The public key to revoke.")]) -> None:
    """Revoke a key: every gateway answers 401 to it within seconds, without a restart."""
    settings = settings_from_env()
    bootstrap, topic = endpoints_or_fail(settings).kafka_bootstrap, settings.topic("config")
    key = asyncio.run(_key_ring(bootstrap, topic)).keys.get(public_key)
    if key is None:
        fail(f"no live key {public_key}")
        return
    asyncio.run(publish_config(bootstrap, topic, config_key(key.project_id, public_key), None))
    console.print(f"revoked {public_key} (project {key.project_id})")
