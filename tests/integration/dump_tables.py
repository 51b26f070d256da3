"""Print the pipeline's tables (FINAL) as one JSON document: run as a separate process, since chDB allows
one process per data folder and the test process may open several folders."""

import sys

import orjson

from pipeline.stores.clickhouse import connect

client = connect(sys.argv[1], "test-dump")
document = {}
for table in ("traces", "observations", "scores", "media"):
    result = client.query(f"SELECT * FROM {table} FINAL")
    document[table] = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    document[f"{table}_versions"] = client.query(f"SELECT count() FROM {table}").result_rows[0][0]
sys.stdout.buffer.write(orjson.dumps(document, default=str))
