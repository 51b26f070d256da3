"""The one place for configuration: typed settings read from environment variables.

Every setting is an environment variable prefixed ``LFPIPE_`` (for example ``LFPIPE_KAFKA_BOOTSTRAP``);
CLI flags override the few that operators change per run. The README lists them with their defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LFPIPE_", extra="ignore", frozen=True)

    stack_dir: Path = Field(
        default=Path(".stack"),
        description="Local stack data, logs and stack.json (what runs where), which other commands read.",
    )

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset means the local stack's broker."
    )
    topic_prefix: str = Field(default="", description="Prefix for every topic name (isolates test runs).")
    consumer_group: str = Field(default="lfpipe-worker", description="The workers' consumer group (and Faust app id).")

    clickhouse_url: str | None = Field(
        default=None,
        description="clickhouse-connect DSN: http://user:pass@host:8123/db for a server, chdb:///path for "
        "embedded; unset means embedded chDB under the stack dir.",
    )

    archive_url: str | None = Field(
        default=None,
        description="s3://bucket/prefix for object storage, or a local folder path; unset means a folder "
        "under the stack dir.",
    )
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL; unset means the stack's SeaweedFS.")
    s3_access_key: str | None = Field(default=None, description="S3 access key; unset means the stack's.")
    s3_secret_key: str | None = Field(default=None, description="S3 secret key; unset means the stack's.")
    s3_region: str = Field(default="us-east-1", description="S3 region (signing).")

    batch_max_events: int = Field(default=5000, ge=1, description="A batch closes at this many events ...")
    batch_max_bytes: int = Field(
        default=64_000_000, ge=1_000_000, description="... or this many bytes of message values ..."
    )
    batch_max_seconds: float = Field(default=0.5, gt=0, description="... or this long after its first message arrived.")
    max_event_bytes: int = Field(default=4_500_000, ge=1024, description="Larger messages are dead-lettered.")
    state_max_entities: int = Field(
        default=200_000, ge=100, description="Merged entities kept in memory; older ones are re-read on demand."
    )
    dedup_max_ids: int = Field(default=1_000_000, ge=1000, description="Recent event ids remembered for dedup.")
    media_min_bytes: int = Field(
        default=1024, ge=0, description="Base64 media at least this large (decoded) move to object storage."
    )
    media_max_bytes: int = Field(default=50_000_000, ge=1, description="Larger media stay inline.")
    retry_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest back-off between retries of a failing sink."
    )

    session_timeout_seconds: float = Field(
        default=10.0, ge=6, description="A worker silent this long (crashed) leaves the group; its partitions move."
    )
    drain_seconds: float = Field(
        default=20.0,
        gt=0,
        description="How long a stopping worker (or one losing partitions) waits for its batch in flight to be "
        "durable and committed; after that the batch is left to be read again.",
    )
    worker_web_bind: str = Field(
        default="127.0.0.1", description="Address of the worker's HTTP endpoint; binding elsewhere is a choice."
    )
    worker_web_port: int = Field(default=0, ge=0, description="Port of the worker's HTTP endpoint; 0 picks one.")
    exit_when_idle: float | None = Field(
        default=None, description="Exit after this many idle seconds once caught up (batch mode)."
    )

    gateway_bind: str = Field(
        default="127.0.0.1", description="Address the gateway listens on; binding elsewhere is a choice."
    )
    gateway_port: int = Field(default=3000, ge=0, description="Port of the gateway (Langfuse's); 0 picks one.")
    gateway_workers: int = Field(
        default=0, ge=0, description="Gateway processes sharing the port; 0 means one per core."
    )
    gateway_max_batch_bytes: int = Field(
        default=4_718_592, ge=1024, description="Largest body of /api/public/ingestion and /scores (Langfuse: 4.5mb)."
    )
    gateway_max_otel_bytes: int = Field(
        default=67_108_864, ge=1024, description="Largest OTLP body, after gzip is undone (64 MiB)."
    )
    gateway_ack_timeout_seconds: float = Field(
        default=3.0, gt=0, description="How long a request waits for Kafka's acknowledgements before a 503."
    )
    gateway_retry_after_seconds: int = Field(default=2, ge=1, description="Retry-After of a gateway's 503.")
    gateway_loglevel: str = Field(default="info", description="Log level of gateway processes.")
    media_upload_max_bytes: int = Field(
        default=1_000_000_000, ge=1, description="Largest file an SDK may upload through /api/public/media."
    )
    media_url_seconds: int = Field(default=3600, ge=60, description="How long presigned media URLs stay valid.")
    s3_public_endpoint: str | None = Field(
        default=None,
        description="S3 endpoint in presigned media URLs, when SDKs reach the store by another address than "
        "lfpipe does; unset means LFPIPE_S3_ENDPOINT.",
    )

    summary_file: Path | None = Field(
        default=None,
        description="Where a worker writes its run summary on exit; unset means <stack dir>/worker-summary.json.",
    )

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def state_file(self) -> Path:
        return self.stack_dir / "stack.json"

    @property
    def chdb_path(self) -> Path:
        return (self.stack_dir / "chdb").resolve()

    @property
    def clickhouse_dsn(self) -> str:
        """The ClickHouse to use: ``LFPIPE_CLICKHOUSE_URL``, else embedded chDB under the stack dir."""
        return self.clickhouse_url or f"chdb://{self.chdb_path}"

    @property
    def local_archive_dir(self) -> Path:
        return (self.stack_dir / "archive").resolve()
