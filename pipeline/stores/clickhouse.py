"""ClickHouse through clickhouse-connect: embedded chDB (``chdb:///path``) or a server URL, same code.

chDB allows one process per data folder, so the process that opens it takes an exclusive lock and records
who it is; other commands (``lfpipe query``) then ask that process instead of failing. chDB's API is
synchronous and not meant for concurrent use, so every call goes through one thread (``ClickHouse.run``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError

LOCK_NAME = ".lfpipe-owner.json"
T = TypeVar("T")

# ClickHouse error codes that mean "this data cannot be stored", whatever is retried: a value the column cannot
# hold, a string that does not parse, a type that does not fit. Anything else (network, timeouts, memory, a
# server restarting) is transient.
DATA_ERROR_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 190, 252, 321, 407})
_CODE = re.compile(r"Code: (\d+)")


class ChdbBusy(RuntimeError):
    """Another live process holds the chDB data folder."""

    def __init__(self, owner: dict[str, Any]) -> None:
        super().__init__(f"the chDB folder is held by process {owner.get('pid')} ({owner.get('role', '?')})")
        self.owner = owner


def chdb_folder(url: str) -> Path | None:
    return Path(url.removeprefix("chdb://")) if url.startswith("chdb://") else None


def read_owner(url: str) -> dict[str, Any] | None:
    folder = chdb_folder(url)
    if folder is None or not (folder / LOCK_NAME).exists():
        return None
    try:
        return orjson.loads((folder / LOCK_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


_held_locks: list[Any] = []


def connect(url: str, role: str, web_port: int | None = None, wait_seconds: float = 0) -> Client:
    """Open ClickHouse. For chDB, lock the folder first, waiting up to ``wait_seconds`` for a short-lived
    holder (a ``query``) to finish; ``ChdbBusy`` when a live process keeps it."""
    folder = chdb_folder(url)
    if folder is None:
        return clickhouse_connect.get_client(dsn=url)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lfpipe.lock", "a+")  # noqa: SIM115 - held for the life of the process
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise ChdbBusy(read_owner(url) or {}) from None
            time.sleep(0.2)
    _held_locks.append(handle)
    (folder / LOCK_NAME).write_bytes(orjson.dumps({"pid": os.getpid(), "role": role, "web_port": web_port}))
    return clickhouse_connect.get_client(dsn=f"chdb://{folder.resolve()}")


def another_session(url: str) -> Client:
    """A second client of a ClickHouse this process has already connected to (``connect``): for chDB, a session
    of its own in the same process (chDB runs sessions concurrently), so reads need not queue behind inserts."""
    folder = chdb_folder(url)
    return clickhouse_connect.get_client(dsn=f"chdb://{folder.resolve()}" if folder is not None else url)


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code carried by an exception, if any."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def is_data_error(exc: BaseException) -> bool:
    """A refusal of the data itself: retrying the same rows can never succeed."""
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, DatabaseError):
        return error_code(exc) in DATA_ERROR_CODES
    # Raised while clickhouse-connect serialises a value that does not fit its column type.
    return isinstance(exc, OverflowError | UnicodeEncodeError | struct.error | TypeError | ValueError)


class ClickHouse:
    """One client and the one thread every call to it runs on."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._columns: dict[str, dict[str, str]] = {}

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def columns(self, table: str) -> dict[str, str]:
        """The table's column names, in order, with their types (cached: migrations do not run under a live
        client); inserts pass the types, so clickhouse-connect need not ask for them each time."""
        if table not in self._columns:
            result = self.client.query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {table:String} "
                "ORDER BY position",
                parameters={"table": table},
            )
            self._columns[table] = {name: kind for name, kind in result.result_rows}
        return self._columns[table]

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.client.close()
