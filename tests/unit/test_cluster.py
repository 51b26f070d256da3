"""The cluster variant of the migrations keeps every table's columns and sort key, adds replication and
sharding by entity, and runs on a real engine once the cluster parts are taken away."""

from __future__ import annotations

import re

import chdb
import pytest

from pipeline.schema.cluster import UnsupportedStatement, cluster_script, cluster_statements
from pipeline.schema.migrations import load_migrations

TABLES = ("traces", "observations", "scores", "merge_clocks", "media")
SHARDING = {"media": "cityHash64(project_id, trace_id)"}


def test_every_table_becomes_a_replicated_local_table_and_a_distributed_table():
    script = cluster_script(load_migrations(), "prod")
    for table in TABLES:
        assert f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER 'prod'" in script
        assert f"'/clickhouse/tables/{{shard}}/{{database}}/{table}_local', '{{replica}}'" in script
        assert (
            f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER 'prod' AS {table}_local\n"
            f"ENGINE = Distributed('prod', currentDatabase(), '{table}_local', "
            f"{SHARDING.get(table, 'cityHash64(project_id, id)')})"
        ) in script
    assert script.count("ENGINE = ReplicatedReplacingMergeTree(") == len(TABLES)
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/traces_local', '{replica}', "
        "event_ts, is_deleted)" in script
    )


def test_the_local_tables_are_the_single_server_tables(tmp_path):
    # Undo the cluster parts (ON CLUSTER, Replicated path arguments) and the result must create the same
    # columns and sort keys on a real engine as the single-server migrations do.
    def columns(session, table):
        return session.query(
            f"SELECT name, type FROM system.columns WHERE table = '{table}' ORDER BY position", "CSV"
        ).bytes()

    single = chdb.session.Session(str(tmp_path / "single"))
    for migration in load_migrations():
        for statement in migration.sql.split(";\n"):
            if statement.strip() and "CREATE" in statement:
                single.query(statement)
    expected = {table: columns(single, table) for table in TABLES}
    single.close()

    local = chdb.session.Session(str(tmp_path / "local"))
    for migration in load_migrations():
        for statement in cluster_statements(migration.sql, "prod"):
            if "Distributed(" in statement:
                continue
            plain = statement.replace(" ON CLUSTER 'prod'", "").replace("_local", "")
            plain = re.sub(r"Replicated(\w+)\('[^']*', '\{replica\}',? ?", r"\1(", plain)
            local.query(plain)
    assert {table: columns(local, table) for table in TABLES} == expected
    local.close()


def test_statements_without_a_cluster_rewrite_are_refused():
    with pytest.raises(UnsupportedStatement):
        cluster_statements("DROP TABLE traces;\n", "prod")


def test_the_script_records_the_migrations_so_workers_accept_the_cluster():
    migrations = load_migrations()
    script = cluster_script(migrations, "prod")
    assert "CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER 'prod'" in script
    for migration in migrations:
        assert f"({migration.version}, '{migration.name}', '{migration.checksum}')" in script
