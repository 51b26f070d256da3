"""Versioned ClickHouse migrations (``schemas/clickhouse/migrations/NNNN_name.sql``), applied in order.

Applied versions are recorded in ``schema_migrations`` with a checksum; an applied file that changed
afterwards is reported instead of silently re-run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse" / "migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        version, _, name = path.stem.partition("_")
        migrations.append(Migration(int(version), name, path.read_text()))
    return migrations


def statements(sql: str) -> list[str]:
    """Split a file on ';' at line ends, dropping comment-only chunks."""
    chunks = [chunk.strip() for chunk in sql.split(";\n")]
    return [
        c.rstrip(";")
        for c in chunks
        if any(line.strip() and not line.strip().startswith("--") for line in c.splitlines())
    ]


class SchemaNotMigrated(RuntimeError):
    pass


def require_migrated(client: Client, folder: Path = MIGRATIONS_DIR) -> None:
    """Refuse to start on a ClickHouse that lacks migrations (instead of failing at the first batch)."""
    try:
        done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    except Exception:
        done = set()
    pending = [f"{m.version:04d}_{m.name}" for m in load_migrations(folder) if m.version not in done]
    if pending:
        raise SchemaNotMigrated(f"ClickHouse lacks migrations {', '.join(pending)}: run `lfpipe migrate` first")


def migrate(client: Client, folder: Path = MIGRATIONS_DIR) -> tuple[list[str], list[str]]:
    """Apply pending migrations; returns (applied now, problems)."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0]: row[1] for row in client.query("SELECT version, checksum FROM schema_migrations").result_rows}
    applied, problems = [], []
    for migration in load_migrations(folder):
        label = f"{migration.version:04d}_{migration.name}"
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                problems.append(f"{label} changed after it was applied")
            continue
        for statement in statements(migration.sql):
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(label)
    return applied, problems
