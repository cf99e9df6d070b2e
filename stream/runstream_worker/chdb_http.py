"""The embedded ClickHouse engine (chDB) served over ClickHouse's HTTP interface.

chDB runs in one process per database path. Serving that process's engine over HTTP lets
everything else reach the same data with an ordinary ``http://host:port`` DSN: several workers in
one consumer group, Grafana's ClickHouse plugin, notebooks. It speaks the part of ClickHouse's HTTP
protocol that clients use: the query in the body or the ``query`` parameter, ``database``,
``param_*`` bindings, settings as URL parameters, ``FORMAT`` clauses, INSERT bodies (compressed with
lz4, zstd, gzip or deflate), ``/ping``, and errors as ``Code: N. DB::Exception`` with
``X-ClickHouse-Exception-Code``, and gzip/deflate responses for ``enable_http_compression=1``.
Output formats are chDB's own (Native as clickhouse-connect and Grafana's plugin ask for it,
RowBinaryWithNamesAndTypes, JSON, ...). ClickHouse's own block compression (``compress=1``) is
not spoken: configure clients without it. There is no authentication: bind to 127.0.0.1 (the
default) or put a proxy in front. A read-only server refuses writes and DDL (``readonly = 2``).
Requests run one at a time on the server's own chDB handle; other handles in the same process
(the worker's inserts) run alongside.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from runstream._log import get_logger

log = get_logger("runstream.chdb_http")

# URL parameters that are part of the HTTP protocol rather than query settings.
_PROTOCOL_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "query_id",
        "user",
        "password",
        "wait_end_of_query",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "client_protocol_version",
        "buffer_size",
        "role",
    }
)
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+([A-Za-z0-9_]+)\s*$", re.IGNORECASE | re.DOTALL)
# An INSERT in the body is followed by its data: the statement ends at the line break after FORMAT.
_BODY_INSERT = re.compile(rb"^\s*INSERT\s+INTO\s+.+?\s+FORMAT\s+[A-Za-z0-9_]+[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE = re.compile(r"Code: (\d+)")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        out = []
        while body:  # clients stream one frame per block: decode them all
            frame = lz4.frame.LZ4FrameDecompressor()
            out.append(frame.decompress(body))
            body = frame.unused_data
        return b"".join(out)
    if encoding == "zstd":
        try:
            from compression import zstd
        except ImportError:
            from backports import zstd
        return bytes(zstd.decompress(body))
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _compress_reply(body: bytes, accept_encoding: str) -> tuple[bytes, str | None]:
    """The body compressed as the client accepts (gzip or deflate), or as is."""
    accepted = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    if "gzip" in accepted:
        return gzip.compress(body, compresslevel=3), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 3), "deflate"
    return body, None


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _settings_clause(settings: dict[str, str]) -> str:
    valid = {k: v for k, v in settings.items() if _SETTING_NAME.match(k)}
    return " SETTINGS " + ", ".join(f"{k} = {_literal(v)}" for k, v in valid.items()) if valid else ""


class ChdbEngine:
    """One chDB connection, used by one request at a time.

    chDB allows one database path per process but any number of handles to it, so a worker can
    serve its own path while it inserts through clickhouse-connect's handle.
    """

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        import chdb

        os.makedirs(path, exist_ok=True)
        self._conn = chdb.connect(path)
        self._lock = threading.Lock()
        self.readonly = readonly
        if readonly:
            # Session-wide for this handle only; a query cannot lift it (readonly 2 forbids
            # changing readonly itself but lets clients pass settings such as max_execution_time).
            self._conn.query("SET readonly = 2", "TabSeparated")

    def execute(
        self,
        sql: str,
        fmt: str,
        params: dict[str, str],
        database: str | None,
        settings: dict[str, str],
        data: bytes | None,
    ) -> bytes:
        with self._lock:
            if database:
                self._conn.query(f"USE `{database.replace('`', '')}`", "TabSeparated")
            if data is not None:
                return self._insert(sql, data, settings)
            match = _TRAILING_FORMAT.search(sql)
            if match:
                fmt, sql = match[1], sql[: match.start()]
            result = self._conn.query(sql.rstrip().rstrip(";") + _settings_clause(settings), fmt, params=params)
            return bytes(result.bytes()) if hasattr(result, "bytes") else bytes(result)

    def _insert(self, sql: str, data: bytes, settings: dict[str, str]) -> bytes:
        match = _INSERT.match(sql)
        if not match:
            raise ValueError("a request body with a query parameter must be an INSERT ... FORMAT <format>")
        target, fmt = match[1], match[2]
        with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as tmp:
            tmp.write(data)
        try:
            quoted = "'" + tmp.name.replace("'", "\\'") + "'"
            self._conn.query(
                f"INSERT INTO {target} FROM INFILE {quoted}{_settings_clause(settings)} FORMAT {fmt}", "TabSeparated"
            )
        finally:
            os.unlink(tmp.name)
        return b""

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _handler(engine: ChdbEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "runstream-chdb"

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are not worth a log line each

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            if url.path.rstrip("/") == "/ping":
                self._reply(200, b"Ok.\n", {})
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                body = self._body()
                body = _decompress(body, self.headers.get("Content-Encoding", ""))
                inline = _BODY_INSERT.match(body)
                if "query" in params:
                    sql, data = params["query"], (body or None)
                elif inline:
                    sql, data = inline[0].decode().strip(), body[inline.end() :]
                else:
                    sql, data = body.decode(), None
                bindings = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
                settings = {k: v for k, v in params.items() if k not in _PROTOCOL_PARAMS and not k.startswith("param_")}
                fmt = params.get("default_format", "TabSeparated")
                result = engine.execute(sql, fmt, bindings, params.get("database"), settings, data)
            except Exception as exc:
                message = str(exc)
                code = _ERROR_CODE.search(message)
                if not message.startswith("Code:"):
                    message = f"Code: {code[1] if code else 1000}. DB::Exception: {message}"
                self._reply(500, message.encode() + b"\n", {"X-ClickHouse-Exception-Code": code[1] if code else "1000"})
                return
            headers = {"X-ClickHouse-Format": fmt}
            if params.get("enable_http_compression") == "1":
                result, encoding = _compress_reply(result, self.headers.get("Accept-Encoding", ""))
                if encoding:
                    headers["Content-Encoding"] = encoding
            self._reply(200, result, headers)

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-ClickHouse-Timezone", "UTC")
            self.send_header("X-ClickHouse-Summary", json.dumps({"read_rows": "0", "written_rows": "0"}))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


class ChdbHttpServer:
    """Serves one chDB database path on ``host:port`` until ``stop()``."""

    def __init__(self, path: str, host: str = "127.0.0.1", port: int = 8123, *, readonly: bool = False) -> None:
        self.engine = ChdbEngine(path, readonly=readonly)
        self._server = ThreadingHTTPServer((host, port), _handler(self.engine))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        log.info("serving chDB over HTTP", port=self.port, readonly=self.engine.readonly)
        if on_ready is not None:
            on_ready()
        self._server.serve_forever(poll_interval=0.2)

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler: it does not wait)."""
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def start(self) -> ChdbHttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="chdb-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.engine.close()
