"""Where the services are: explicit settings first, else what the local stack (``lfpipe dev up``) runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.stores.objects import ObjectStore


class StackNotRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    clickhouse_url: str
    archive_url: str
    s3_endpoint: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    s3_region: str = "us-east-1"
    s3_public_endpoint: str | None = None

    def archive(self, url: str | None = None) -> ObjectStore:
        """The object store of the archive and media (or of ``url``, another archive) with these credentials."""
        from pipeline.stores.objects import open_store

        return open_store(
            url or self.archive_url,
            self.s3_endpoint,
            self.s3_access_key,
            self.s3_secret_key,
            self.s3_region,
            self.s3_public_endpoint,
        )


def stack_state(settings: Settings) -> dict:
    try:
        return orjson.loads(settings.state_file.read_bytes())
    except FileNotFoundError:
        return {}


def resolve(settings: Settings) -> Endpoints:
    state = stack_state(settings)
    bootstrap = settings.kafka_bootstrap or state.get("kafka", {}).get("bootstrap")
    if not bootstrap:
        raise StackNotRunning("no Kafka configured: set LFPIPE_KAFKA_BOOTSTRAP or start the stack with `lfpipe dev up`")
    s3 = state.get("s3", {})
    archive_url = settings.archive_url or (f"s3://{s3['bucket']}/archive" if s3 else str(settings.local_archive_dir))
    return Endpoints(
        kafka_bootstrap=bootstrap,
        clickhouse_url=settings.clickhouse_dsn,
        archive_url=archive_url,
        s3_endpoint=settings.s3_endpoint or s3.get("endpoint"),
        s3_access_key=settings.s3_access_key or s3.get("access_key"),
        s3_secret_key=settings.s3_secret_key or s3.get("secret_key"),
        s3_region=settings.s3_region,
        s3_public_endpoint=settings.s3_public_endpoint,
    )
