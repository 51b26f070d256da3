"""``lfpipe query`` against an embedded chDB folder that a worker holds.

chDB lets one process open a folder, so the worker answers such queries itself, and only to the local user:
- on a Unix socket with owner-only permissions, never on a TCP port;
- in a read-only session of its own, separate from the one the worker writes with;
- for a single SELECT that uses no table functions and none of the functions that read files or the network.

With a ClickHouse server nothing is served here: ``lfpipe query`` talks to the server itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pipeline.stores.clickhouse import ChdbBusy, ClickHouse, another_session, chdb_folder, connect

# Functions that reach outside the database even inside a SELECT (``file`` reads any local file).
DENIED_FUNCTIONS = frozenset(
    {"file", "url", "s3", "s3cluster", "hdfs", "remote", "remotesecure", "azureblobstorage", "executable"}
    | {"mysql", "postgresql", "jdbc", "odbc", "sqlite", "mongodb", "redis", "input", "cluster"}
)
READ_ONLY = {"readonly": "1", "max_execution_time": "60", "max_result_rows": "100000", "result_overflow_mode": "break"}
_FUNCTION = re.compile(r"^\s*Function (\S+)")


def socket_path(chdb_folder: Path) -> Path:
    """Short and per user (a Unix socket path has at most 107 bytes): a folder of the user's own in /tmp."""
    digest = hashlib.sha256(str(chdb_folder.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"lfpipe-{os.getuid()}" / f"query-{digest}.sock"


def refusal(ast: list[str]) -> str | None:
    """Why a query (its ``EXPLAIN AST`` lines) is not served, or None."""
    if not ast or not ast[0].startswith("SelectWithUnionQuery"):
        return "only a single SELECT is served"
    for previous, line in zip(["", *ast], ast, strict=False):
        found = _FUNCTION.match(line)
        if not found:
            continue
        name = found.group(1)
        if previous.strip().startswith("TableExpression"):
            return f"table functions are not served ({name})"
        if name.lower() in DENIED_FUNCTIONS:
            return f"function {name} reads outside the database and is not served"
    return None


class QueryRefused(ValueError):
    pass


class QueryServer:
    """Owner-only Unix socket; ``POST /query`` with SQL in the body answers {columns, rows} or {error}."""

    def __init__(self, clickhouse: ClickHouse, chdb_folder: Path) -> None:
        self.clickhouse = clickhouse
        self.path = socket_path(chdb_folder)
        self._folder = chdb_folder
        self._client: Any = None
        self._runner: web.AppRunner | None = None

    def query(self, sql: str) -> dict[str, Any]:
        """On the ClickHouse thread, in a read-only session of its own."""
        if ";" in sql.strip().rstrip(";"):
            raise QueryRefused("one statement at a time (no ';' inside the SQL)")
        if self._client is None:
            self._client = another_session(f"chdb://{self._folder}")
        ast = [row[0] for row in self._client.query(f"EXPLAIN AST {sql}", settings=READ_ONLY).result_rows]
        reason = refusal(ast)
        if reason:
            raise QueryRefused(reason)
        result = self._client.query(sql, settings=READ_ONLY)
        return {"columns": list(result.column_names), "rows": [list(row) for row in result.result_rows]}

    async def _handle(self, request: web.Request) -> web.Response:
        sql = await request.text()
        try:
            body = await self.clickhouse.run(self.query, sql)
        except Exception as exc:
            return web.Response(body=orjson.dumps({"error": str(exc)}), status=400, content_type="application/json")
        return web.Response(body=orjson.dumps(body, default=str), content_type="application/json")

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        if self.path.parent.stat().st_uid != os.getuid() or self.path.parent.stat().st_mode & 0o077:
            raise PermissionError(f"{self.path.parent} must belong to this user alone")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a worker that was killed
        app = web.Application()
        app.router.add_post("/query", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        old_mask = os.umask(0o177)  # the socket is created owner-only, never readable by others even briefly
        try:
            await web.UnixSite(self._runner, str(self.path)).start()
        finally:
            os.umask(old_mask)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def ask_worker(chdb_folder: Path, sql: str, timeout: float = 90) -> tuple[list[str], list[list[Any]]]:
    """Run ``sql`` through the worker that holds ``chdb_folder``."""
    connection = _UnixConnection(socket_path(chdb_folder), timeout)
    try:
        connection.request("POST", "/query", body=sql.encode(), headers={"Content-Type": "text/plain"})
        response = connection.getresponse()
        body = orjson.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(body.get("error", f"the worker answered {response.status}"))
    return body["columns"], body["rows"]


def query_clickhouse(dsn: str, sql: str) -> tuple[list[str], list[list[Any]]]:
    """Run ``sql`` on the ClickHouse at ``dsn``; when a worker holds that chDB folder, ask the worker
    (read-only, one SELECT)."""
    try:
        client = connect(dsn, "query")
    except ChdbBusy:
        folder = chdb_folder(dsn)
        assert folder is not None  # only a chDB folder can be busy
        return ask_worker(folder, sql)
    result = client.query(sql)
    return list(result.column_names), [list(row) for row in result.result_rows]
