"""Test-only ClickHouse HTTP front over one chDB folder, so several worker processes can share one ClickHouse
engine (chDB allows one process per folder) and a test can take "the ClickHouse server" down and up again.

It speaks the part of ClickHouse's HTTP interface that clickhouse-connect uses: the SQL is the ``query``
parameter followed by the body, ``param_*`` parameters are bound server-side, insert bodies may be
compressed, errors are status 500 with ClickHouse's ``Code: N. DB::Exception`` text. Never part of the
product: a real deployment points ``LFPIPE_CLICKHOUSE_URL`` at a ClickHouse server.

    python tests/chdb_front.py --path DIR --port PORT [--refuse-value TEXT]

``--refuse-value`` makes it refuse, as a ClickHouse server refuses a value its column cannot hold, every insert
whose data contains TEXT: the test case of a permanent store failure (the real engine refuses no single value
that lfpipe's validation lets through).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import tempfile
import threading
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import chdb
import lz4.frame
import zstandard

INSERT_DATA = re.compile(rb"^\s*INSERT\s.*?\bFORMAT\s+(\w+)[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL)
ERROR_CODE = re.compile(r"Code: (\d+)")
DECODERS = {
    "lz4": lz4.frame.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    "gzip": gzip.decompress,
}


class Engine:
    def __init__(self, path: str, refuse_value: bytes | None = None) -> None:
        self.refuse_value = refuse_value
        self.connection = chdb.connect(path)
        self.lock = threading.Lock()  # one chDB connection: one statement at a time
        self.database = "default"

    def run(self, sql: bytes, params: dict[str, str], default_format: str, database: str) -> bytes:
        with self.lock:
            if database != self.database:  # the connection is shared: each request names its database
                self.connection.query(f"USE `{database}`", "TabSeparated")
                self.database = database
            match = INSERT_DATA.match(sql)
            if match and len(sql) > match.end():
                return self._insert(sql[: match.start(1)].decode(), match.group(1).decode(), sql[match.end() :])
            result = self.connection.query(sql.decode(), default_format, params=params)
            return result.bytes() or b""

    def _insert(self, statement: str, fmt: str, data: bytes) -> bytes:
        if self.refuse_value and self.refuse_value in data:
            raise ValueError(
                f"Code: 53. DB::Exception: Cannot convert a value of the inserted block ({statement.split()[2]}): "
                "the test front refuses it. (TYPE_MISMATCH)"
            )
        # chDB has no request body: the rows go through a file.
        with tempfile.NamedTemporaryFile(suffix=f".{fmt}", delete=False) as handle:
            handle.write(data)
        try:
            head = statement.rstrip().removesuffix("FORMAT").rstrip()
            self.connection.query(f"{head} FROM INFILE '{handle.name}' FORMAT {fmt}", "TabSeparated")
            return b""
        finally:
            os.unlink(handle.name)


def make_handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:  # quiet: the tests read the data, not access logs
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path in ("/ping", "/") and "query" not in parse_qs(url.query):
                self._reply(200, b"Ok.\n")
                return
            self._execute(b"")

        def do_POST(self) -> None:
            body = self._read_body()
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding in DECODERS:
                body = DECODERS[encoding](body)
            self._execute(body)

        def _read_body(self) -> bytes:
            if (self.headers.get("Transfer-Encoding") or "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []  # clickhouse-connect streams inserts in chunks
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)

        def _execute(self, body: bytes) -> None:
            query = {name: values[0] for name, values in parse_qs(urlparse(self.path).query).items()}
            content_type = self.headers.get("Content-Type") or ""
            if content_type.startswith("multipart/form-data"):
                # Long parameter values travel as form fields instead of URL parameters.
                message = BytesParser(policy=default).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + body
                )
                for part in message.iter_parts():
                    query[part.get_param("name", header="content-disposition")] = part.get_content()
                body = b""
            sql = (query.get("query", "").encode() + b"\n" + body) if "query" in query else body
            params = {name.removeprefix("param_"): value for name, value in query.items() if name.startswith("param_")}
            try:
                fmt = query.get("default_format", "TabSeparated")
                data = engine.run(sql, params, fmt, query.get("database") or "default")
            except Exception as exc:
                message = str(exc)
                code = ERROR_CODE.search(message)
                text = message if code else f"Code: 1001. DB::Exception: {message}"
                self._reply(500, text.encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1001"})
                return
            self._reply(200, data, {"X-ClickHouse-Format": "Native", "X-ClickHouse-Timezone": "UTC"})

        def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--refuse-value", help="refuse inserts whose data contains this text (a data error)")
    args = parser.parse_args()
    refuse = args.refuse_value.encode() if args.refuse_value else None
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Engine(args.path, refuse)))
    server.serve_forever()


if __name__ == "__main__":
    main()
