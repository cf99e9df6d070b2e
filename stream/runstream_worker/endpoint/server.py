"""ClickHouse's HTTP interface for the embedded engine, closed to attackers and open to real clients.

ClickHouse server's own HTTP interface is the reference: queries in the ``query`` parameter or the
body, ``database``, ``default_format``, ``param_*`` bindings, settings as URL parameters,
``enable_http_compression``, ``wait_end_of_query``, ``client_protocol_version`` for Native output,
``/ping``, and errors as ``Code: N. DB::Exception: ...`` with ``X-ClickHouse-Exception-Code`` and
the status ClickHouse would send. On top of it, for an endpoint on a developer's machine:

- every request signs in (``auth``); GET is read-only; a request must name this machine in ``Host``
  (DNS rebinding) and come from no foreign web ``Origin``;
- each statement is checked with the engine's own parser (``statements``) and runs on a handle of
  its own with the request's settings and the endpoint's limits (``request_settings``, ``engine``);
- bodies, connections, concurrent queries and waits are capped, results are streamed, and
  ``stop()`` cancels running queries and returns within a bound.
"""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from runstream_core.credentials import is_loopback
from runstream_core.log import get_logger
from runstream_core.team_access import discover
from runstream_worker.endpoint.auth import Authenticator, Principal, credentials
from runstream_worker.endpoint.bodies import ResponseEncoder, body_chunks, decoded
from runstream_worker.endpoint.config import EndpointConfig
from runstream_worker.endpoint.engine import EmbeddedEngine
from runstream_worker.endpoint.errors import Code, EndpointError, denied
from runstream_worker.endpoint.request_settings import request_settings, requested_readonly
from runstream_worker.endpoint.statements import Statement, StatementPolicy, TeamScope

log = get_logger("runstream.endpoint")

# An INSERT whose data follows in the body: the statement ends at the line break after FORMAT <name>.
_BODY_INSERT = re.compile(rb"^\s*INSERT\s+INTO\s.+?\sFORMAT\s+([A-Za-z0-9_]+)[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_SAFE_HEADER_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
# Output formats that read schema or template files named in settings.
_FILE_READING_FORMATS = frozenset(
    {"template", "templateignorespaces", "protobuf", "protobufsingle", "protobuflist", "capnproto"}
)
_CONTENT_TYPES = {"json": "application/json; charset=UTF-8", "native": "application/octet-stream"}
STOP_BOUND_S = 5.0
SCOPE_TTL_S = 60.0
# Statements the engine streams block by block; the others (DDL, SHOW, ...) return small results whole.
STREAMED_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})


class EndpointServer:
    """Serves one embedded database path on ``config.host:config.port`` until ``stop()``."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.engine = EmbeddedEngine(config.path)
        self.policy = StatementPolicy(
            lambda sql: self.engine.classify(sql, config.default_database),
            self.engine.explain_ast,
            self.engine.format_query,
            self.engine.table_functions,
        )
        self.auth = Authenticator(config.user, config.password, config.users_file)
        self._scopes: dict[str, tuple[int, float, TeamScope]] = {}
        self._scopes_lock = threading.Lock()
        self._queries = threading.BoundedSemaphore(config.max_concurrent_queries)
        self._server = _Server((config.host, config.port), _handler(self), config.max_connections)
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def _announce(self) -> None:
        log.info(
            "serving clickhouse http",
            url=self.url,
            writable=self.config.writable,
            user=self.config.user,
            password_file=str(self.config.password_file) if self.config.password_file else None,
        )

    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in this thread until ``request_stop()``."""
        self._announce()
        if on_ready is not None:
            on_ready()
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> EndpointServer:
        """Serve in a thread of its own (announced from the caller's thread)."""
        self._announce()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="clickhouse-http", daemon=True
        )
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler: it does not wait)."""
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def stop(self) -> None:
        """Stop accepting, cancel running queries, close connections; returns within a few seconds."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self.engine.cancel_all()
        self._server.close_connections(STOP_BOUND_S)
        self.engine.close()

    # The request pipeline, called by the handler thread of each request.

    def run(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        if url.path in ("/ping", "/ping/"):
            handler.reply(HTTPStatus.OK, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if url.path not in ("", "/"):
            raise EndpointError(Code.UNSUPPORTED_METHOD, f"There is no handle {url.path[:64]}", "UNSUPPORTED_METHOD")
        self._check_host_and_origin(handler)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if params.get("compress") == "1" or params.get("decompress") == "1":
            raise EndpointError(
                Code.NOT_IMPLEMENTED,
                "ClickHouse's block compression (compress=1 / decompress=1) is not supported by this endpoint: "
                "use HTTP compression (Accept-Encoding / Content-Encoding: gzip, deflate, lz4 or zstd)",
            )
        principal = self.auth.authenticate(credentials(handler.headers, params))
        scope = self._scope(principal.team) if principal.team else None
        readonly = method != "POST" or not self.config.writable or scope is not None
        chunks = body_chunks(handler.rfile, handler.headers, self.config.max_body_bytes)
        body = decoded(chunks, handler.headers.get("Content-Encoding", ""), self.config.max_decompressed_bytes)
        sql, data = self._statement_and_data(params, body, writable=not readonly)
        if method != "POST" and data is not None:
            raise EndpointError(Code.READONLY, "Cannot insert with a GET request: use POST")
        database = params.get("database") or (scope.database if scope else self.config.default_database)
        if scope is not None and database != scope.database:
            raise scope.refuse(database, "*")
        bindings = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
        statement = self.policy.check(sql, database=database, allow_writes=not readonly, params=bindings, scope=scope)
        self._run_statement(handler, principal, statement, params, database, data, head=method == "HEAD", scope=scope)

    def _scope(self, team: str) -> TeamScope:
        """What ``team`` may read, from the store's catalogue; found again when the users file or
        (within a minute) the tables change."""
        generation = self.auth.generation
        with self._scopes_lock:
            cached = self._scopes.get(team)
            if cached and cached[0] == generation and time.monotonic() - cached[1] < SCOPE_TTL_S:
                return cached[2]
        database = self.config.store_database
        objects = discover(self.engine, database)
        every = self.engine.rows("SELECT name FROM system.tables WHERE database = {db:String}", {"db": database})
        scope = TeamScope(
            team=team,
            database=database,
            granted=frozenset(objects.granted),
            store_objects=frozenset(str(row[0]) for row in every),
            filtered_tables=frozenset(objects.tables),
        )
        with self._scopes_lock:
            self._scopes[team] = (generation, time.monotonic(), scope)
        return scope

    def _check_host_and_origin(self, handler: _Handler) -> None:
        host = (handler.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]")
        open_to_any = not self.config.loopback and not self.config.allowed_hosts
        if name and not (is_loopback(name) or _is_ip(name) or name in self.config.allowed_hosts or open_to_any):
            raise denied(f"Host {host[:64]!r} is not allowed: add it to RUNSTREAM_HTTP_ALLOWED_HOSTS")
        origin = (handler.headers.get("Origin") or "").strip().lower()
        if origin and origin not in self.config.allowed_origins:
            raise denied(f"Requests from the web origin {origin[:64]!r} are not allowed")
        site = (handler.headers.get("Sec-Fetch-Site") or "").strip().lower()
        if site in ("cross-site", "same-site") and not origin:
            raise denied("Cross-site requests from a browser are not allowed")

    def _statement_and_data(
        self, params: dict[str, str], body: Iterator[bytes], *, writable: bool
    ) -> tuple[str, Iterator[bytes] | None]:
        """The SQL, and for an INSERT whose rows follow in the body, those rows."""
        limit = self.config.max_query_size
        if "query" in params:
            sql = params["query"]
            if writable and _is_insert(sql):
                return sql, body
            sql += _read_text(body, limit - len(sql.encode()))
        else:
            head = _read_head(body, limit)
            inline = _BODY_INSERT.match(head) if writable else None
            if inline:
                return head[: inline.end()].decode().strip(), _prepend(head[inline.end() :], body)
            sql = head.decode(errors="replace") + _read_text(body, limit - len(head))
        if len(sql.encode()) > limit:
            raise EndpointError(Code.SYNTAX_ERROR, f"Max query size exceeded ({limit} bytes)")
        return sql, None

    def _run_statement(
        self,
        handler: _Handler,
        principal: Principal,
        statement: Statement,
        params: dict[str, str],
        database: str,
        data: Iterator[bytes] | None,
        *,
        head: bool,
        scope: TeamScope | None,
    ) -> None:
        settings = request_settings(params, self.config.limits, writable=self.config.writable and scope is None)
        if scope is not None:
            settings["additional_table_filters"] = scope.table_filters()
        bindings = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
        query_id = params.get("query_id") or str(uuid.uuid4())
        if not _SAFE_HEADER_VALUE.match(query_id):
            raise EndpointError(Code.BAD_ARGUMENTS, "query_id may only hold letters, digits and '_.:-'")
        if not self._queries.acquire(blocking=False):
            raise EndpointError(
                Code.TOO_MANY_SIMULTANEOUS_QUERIES,
                f"Too many simultaneous queries. Maximum: {self.config.max_concurrent_queries}",
            )
        try:
            # Reads run readonly = 1 on a read-only endpoint; on a writable one 2, so that inserting
            # clients see their settings as changeable (SETTINGS clauses are refused either way).
            readonly = 0 if statement.writes else (2 if self.config.writable and scope is None else 1)
            asked = requested_readonly(params)
            if asked is not None and statement.writes:
                raise EndpointError(Code.READONLY, "Cannot execute query in readonly mode (readonly was requested)")
            if asked == 1:
                readonly = 1
            session = self.engine.session(uuid.uuid4().hex, database, settings, readonly=readonly)
            try:
                if data is not None:
                    self._insert(session, statement, data)
                    handler.reply(HTTPStatus.OK, b"", {"X-ClickHouse-Query-Id": query_id})
                    return
                fmt = self.engine.output_format(statement.output_format or params.get("default_format") or "TSV")
                if fmt.lower() in _FILE_READING_FORMATS:
                    raise denied(f"Output format {fmt} reads schema files and is not allowed here")
                if statement.root in STREAMED_ROOTS:
                    chunks = session.stream(statement.sql, fmt, bindings)
                else:
                    chunks = iter([session.run(statement.sql, fmt, bindings)])
                chunks = _for_client(chunks, fmt, params.get("client_protocol_version", "0"))
                headers = {
                    "X-ClickHouse-Query-Id": query_id,
                    "X-ClickHouse-Format": fmt,
                    "X-ClickHouse-Timezone": self.engine.timezone,
                    "X-ClickHouse-Server-Display-Name": "runstream",
                    "Content-Type": _CONTENT_TYPES.get(fmt.lower()[:4], "text/plain; charset=UTF-8"),
                }
                encoder = ResponseEncoder(
                    handler.headers.get("Accept-Encoding", ""), params.get("enable_http_compression") == "1"
                )
                handler.stream(chunks, headers, encoder, buffered=params.get("wait_end_of_query") == "1", head=head)
            finally:
                session.close()
        finally:
            self._queries.release()
        log.debug("query served", user=principal.name, query_id=query_id)

    def _insert(self, session: Any, statement: Statement, data: Iterator[bytes]) -> None:
        match = _TRAILING_FORMAT.search(statement.sql)
        if not match:
            raise EndpointError(Code.SYNTAX_ERROR, "An INSERT with data in the body must end with FORMAT <format>")
        session.insert(statement.sql[: match.start()], self.engine.input_format(match[1]), data)


def _for_client(chunks: Iterator[bytes], fmt: str, protocol: str) -> Iterator[bytes]:
    """Native output in the layout of the client's protocol revision (BlockInfo, serialization markers)."""
    if fmt != "Native" or not protocol.strip().isdigit() or int(protocol) == 0:
        return chunks
    from runstream_worker.endpoint.native import NativeRewriter, UnsupportedNativeType

    rewriter = NativeRewriter(int(protocol))

    def rewritten() -> Iterator[bytes]:
        try:
            for chunk in chunks:
                out = rewriter.feed(chunk)
                if out:
                    yield out
            rewriter.finish()
        except UnsupportedNativeType as exc:
            raise EndpointError(
                Code.NOT_IMPLEMENTED,
                f"Native output of type {exc.type_name} for client_protocol_version {protocol} is not supported "
                "by this endpoint: cast the column (e.g. toString) or use another format",
            ) from exc

    # The first block is rewritten before the reply starts, so a type error still gets its status.
    stream = rewritten()
    first = next(stream, b"")
    return _prepend(first, stream)


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_insert(sql: str) -> bool:
    return sql.lstrip().upper().startswith("INSERT")


def _read_head(body: Iterator[bytes], limit: int) -> bytes:
    """The start of the body, up to ``limit`` bytes (more stays in ``body``), enough to hold a statement."""
    head = b""
    for chunk in body:
        head += chunk
        if len(head) >= limit or (b"\n" in chunk and _BODY_INSERT.match(head)):
            break
    return head


def _read_text(body: Iterator[bytes], limit: int) -> str:
    data = b""
    for chunk in body:
        data += chunk
        if len(data) > limit:
            raise EndpointError(Code.SYNTAX_ERROR, "Max query size exceeded")
    return data.decode(errors="replace")


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


class _Server(ThreadingHTTPServer):
    """A threading server that caps open connections and can close them all."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n"
                    b"X-ClickHouse-Exception-Code: 202\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def close_connections(self, bound_s: float) -> None:
        """Let handlers finish their replies (a cancelled query answers ``Code: 394``) for a part of
        ``bound_s``, then shut every connection still open; handler threads see it end and return."""
        deadline = time.monotonic() + bound_s
        self._wait_closed(time.monotonic() + bound_s / 3)
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._wait_closed(deadline)

    def _wait_closed(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with self._open_lock:
                if not self._open:
                    return
            time.sleep(0.02)


class _Handler(BaseHTTPRequestHandler):
    """One connection; requests on it are served one after another (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "runstream"
    # Replies go out in several writes (headers, chunks): without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add about 40 ms to each small reply.
    disable_nagle_algorithm = True
    endpoint: EndpointServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request is not worth it; errors are logged below

    def handle_one_request(self) -> None:
        # The request line and headers must arrive within headers_timeout in all (slow clients
        # cannot hold a thread), then each read of the body may wait receive_timeout.
        config = self.endpoint.config
        self.connection.settimeout(config.headers_timeout)
        timer = threading.Timer(config.headers_timeout, self._cut)
        timer.daemon = True
        self._timer = timer
        timer.start()
        try:
            super().handle_one_request()
        except (TimeoutError, OSError):
            self.close_connection = True
        finally:
            timer.cancel()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _begin(self) -> None:
        self._timer.cancel()
        self.connection.settimeout(self.endpoint.config.receive_timeout)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_OPTIONS(self) -> None:
        self._begin()
        origin = (self.headers.get("Origin") or "").strip()
        if origin.lower() not in self.endpoint.config.allowed_origins:
            self.reply_error(denied(f"Requests from the web origin {origin[:64]!r} are not allowed"))
            return
        self.reply(
            HTTPStatus.NO_CONTENT,
            b"",
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, X-ClickHouse-User, X-ClickHouse-Key",
            },
        )

    def _serve(self, method: str) -> None:
        self._begin()
        self._replied = False
        try:
            self.endpoint.run(self, method)
        except EndpointError as exc:
            if self._replied:
                self._abort_stream(exc)
            else:
                self.reply_error(exc)
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:
            log.error("clickhouse http request failed", error=repr(exc))
            error = EndpointError(1000, f"Internal error: {type(exc).__name__}", "UNKNOWN_EXCEPTION")
            if self._replied:
                self._abort_stream(error)
            else:
                self.reply_error(error)

    def _origin_headers(self) -> dict[str, str]:
        origin = (self.headers.get("Origin") or "").strip()
        return {"Access-Control-Allow-Origin": origin} if origin.lower() in self.endpoint.config.allowed_origins else {}

    def reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        self._replied = True
        self.connection.settimeout(self.endpoint.config.send_timeout)
        self.send_response(status)
        for name, value in {**headers, **self._origin_headers()}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_error(self, exc: EndpointError) -> None:
        # A request whose body was not read to its end leaves the connection unusable: close it.
        self.close_connection = True
        self.reply(
            exc.status,
            exc.body(),
            {
                "X-ClickHouse-Exception-Code": str(exc.code),
                "Content-Type": "text/plain; charset=UTF-8",
                "Connection": "close",
            },
        )

    def stream(
        self,
        chunks: Iterator[bytes],
        headers: dict[str, str],
        encoder: ResponseEncoder,
        *,
        buffered: bool,
        head: bool,
    ) -> None:
        if encoder.encoding:
            headers["Content-Encoding"] = encoder.encoding
        if buffered:
            self._send_buffered(chunks, headers, encoder)
            return
        self._replied = True
        self.connection.settimeout(self.endpoint.config.send_timeout)
        self.send_response(HTTPStatus.OK)
        for name, value in {**headers, **self._origin_headers()}.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if head:
            self.wfile.write(b"0\r\n\r\n")
            return
        for chunk in chunks:
            self._chunk(encoder.encode(chunk))
        self._chunk(encoder.finish())
        self.wfile.write(b"0\r\n\r\n")

    def _send_buffered(self, chunks: Iterator[bytes], headers: dict[str, str], encoder: ResponseEncoder) -> None:
        """``wait_end_of_query=1``: the whole result first (spilled to disk past 16 MiB), then the reply."""
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as spool:
            for chunk in chunks:
                spool.write(encoder.encode(chunk))
            spool.write(encoder.finish())
            size = spool.tell()
            spool.seek(0)
            self._replied = True
            self.connection.settimeout(self.endpoint.config.send_timeout)
            self.send_response(HTTPStatus.OK)
            for name, value in {**headers, **self._origin_headers()}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                _copy(spool, self.wfile)

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _abort_stream(self, exc: EndpointError) -> None:
        """An error after the reply began: written into the body, as ClickHouse does, and the connection ends."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._chunk(b"\n" + exc.body())
            self.wfile.write(b"0\r\n\r\n")


def _copy(source: IO[bytes], target: Any) -> None:
    while piece := source.read(1024 * 1024):
        target.write(piece)


def _handler(endpoint: EndpointServer) -> type[_Handler]:
    return type("EndpointHandler", (_Handler,), {"endpoint": endpoint})


def serve_summary(endpoint: EndpointServer) -> str:
    """One line telling a person where the endpoint is and how to sign in."""
    config = endpoint.config
    where = (
        f"its password is in {config.password_file}" if config.password_file else "password: RUNSTREAM_HTTP_PASSWORD"
    )
    mode = "read-write" if config.writable else "read-only"
    return f"serving {config.path} ({mode}) on {endpoint.url}: sign in as {config.user}, {where}"
