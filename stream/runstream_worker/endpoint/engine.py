"""The embedded engine as the endpoint uses it: a fresh handle per request, results as a stream.

chDB lets one process open a database path any number of times; each handle is a session of its
own (settings, current database) and queries on different handles run in parallel. So every
request gets a new handle (about 0.1 ms): nothing one client sets reaches another, and no lock is
held across a query. Every query text starts with a comment naming the endpoint and the request,
so ``close()`` can cancel exactly this endpoint's queries (``KILL QUERY``) and nothing else in the
process, such as the worker's inserts.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import chdb
from clickhouse_connect.driver.binding import format_str, quote_identifier

from runstream_core.log import get_logger
from runstream_worker.endpoint.errors import Code, EndpointError

log = get_logger("runstream.endpoint")

# chDB's own pseudo formats (DataFrame, ArrowTable, ...) are Python objects, not bytes for a client.
_CHDB_PSEUDO_FORMATS = frozenset({"dataframe", "arrowtable", "datastore", "debug"})


class EmbeddedEngine:
    """One database path, opened by this process, with what the endpoint needs to know of it."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._keeper = chdb.connect(path)  # holds the engine open between requests
        self.tag = f"/* runstream-endpoint {uuid.uuid4().hex} "
        self._kill_lock = threading.Lock()
        self.table_functions = frozenset(self._column("SELECT name FROM system.table_functions"))
        self.output_formats = {
            name.lower(): name for name in self._column("SELECT name FROM system.formats WHERE is_output")
        }
        self.input_formats = {
            name.lower(): name for name in self._column("SELECT name FROM system.formats WHERE is_input")
        }
        (self.timezone,) = self._column("SELECT timezone()")

    def _column(self, sql: str) -> list[str]:
        text = bytes(self._keeper.query(sql, "TabSeparatedRaw").bytes()).decode()
        return [line for line in text.split("\n") if line]

    def handle(self) -> Any:
        """A new session on the engine (its settings and current database are its own)."""
        return chdb.connect(self.path)

    def classify(self, sql: str, database: str) -> dict[str, object]:
        handle = self.handle()
        try:
            # The parser's own classification (chDB's classify_query on the native connection).
            return dict(handle._conn.classify_query(sql, database))
        finally:
            handle.close()

    def explain_ast(self, sql: str, params: Mapping[str, str]) -> str:
        handle = self.handle()
        try:
            return bytes(handle.query("EXPLAIN AST " + sql, "TabSeparatedRaw", params=dict(params)).bytes()).decode()
        except Exception as exc:
            raise EndpointError.from_engine(exc) from exc
        finally:
            handle.close()

    def format_query(self, sql: str) -> str:
        """The engine's normalised text of ``sql`` (``formatQuery``): no comments, one clause a line."""
        handle = self.handle()
        try:
            result = handle.query(f"SELECT formatQuery({format_str(sql)})", "TabSeparatedRaw")
            return bytes(result.bytes()).decode()
        except Exception as exc:
            raise EndpointError.from_engine(exc) from exc
        finally:
            handle.close()

    def output_format(self, name: str) -> str:
        """The engine's spelling of output format ``name``; ``Code: 73`` if it has none."""
        found = self.output_formats.get(name.lower())
        if found is None or found.lower() in _CHDB_PSEUDO_FORMATS:
            raise EndpointError(Code.UNKNOWN_FORMAT, f"Unknown output format {name[:64]}")
        return found

    def input_format(self, name: str) -> str:
        found = self.input_formats.get(name.lower())
        if found is None or found.lower() in _CHDB_PSEUDO_FORMATS:
            raise EndpointError(Code.UNKNOWN_FORMAT, f"Unknown input format {name[:64]}")
        return found

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """Rows of a query the endpoint itself runs (catalogue lookups), on a handle of its own."""
        handle = self.handle()
        try:
            params = {k: str(v) for k, v in (parameters or {}).items()}
            body = bytes(handle.query(sql, "JSONCompact", params=params).bytes())
        finally:
            handle.close()
        data: list[list[Any]] = json.loads(body)["data"]
        return data

    def execute(self, sql: str) -> None:
        raise EndpointError(Code.READONLY, "the endpoint runs no statements of its own")

    def session(self, request_id: str, database: str, settings: Mapping[str, str], *, readonly: int) -> Session:
        return Session(self, request_id, database, settings, readonly=readonly)

    def cancel_all(self) -> None:
        """Cancel every query of this endpoint still running (``KILL QUERY``), leaving others alone."""
        with self._kill_lock:
            handle = self.handle()
            try:
                handle.query(f"KILL QUERY WHERE startsWith(query, {format_str(self.tag)}) ASYNC", "TabSeparated")
            except Exception as exc:
                log.warning("could not cancel the endpoint's queries", error=str(exc))
            finally:
                handle.close()

    def close(self) -> None:
        self._keeper.close()


class Session:
    """One request's handle: its database and settings applied, then one statement run on it."""

    def __init__(
        self, engine: EmbeddedEngine, request_id: str, database: str, settings: Mapping[str, str], *, readonly: int
    ) -> None:
        self._engine = engine
        self._tag = f"{engine.tag}{request_id} */\n"
        self._handle = engine.handle()
        try:
            self._prepare(database, settings, readonly)
        except BaseException:
            self._handle.close()
            raise

    def _prepare(self, database: str, settings: Mapping[str, str], readonly: int) -> None:
        try:
            self._handle.query(f"USE {quote_identifier(database)}", "TabSeparated")
        except Exception as exc:
            raise EndpointError.from_engine(exc) from exc
        # One SET for all of them (one engine call): the request's settings, then chDB's Python()
        # table function off (it reads the process's own objects), then readonly last. 1: the query
        # can neither write nor change a setting, and the engine refuses table functions. 2:
        # settings stay changeable, as clients of a writable endpoint (clickhouse-connect) want.
        changes = [f"{name} = {format_str(value)}" for name, value in settings.items()]
        changes.append("allow_python_table_function = 0")
        if readonly:
            changes.append(f"readonly = {int(readonly)}")
        try:
            self._handle.query("SET " + ", ".join(changes), "TabSeparated")
        except Exception as exc:
            raise EndpointError.from_engine(exc) from exc

    def _error(self, exc: BaseException) -> EndpointError:
        error = EndpointError.from_engine(exc)
        error.message = error.message.replace(self._tag, "")
        return error

    def run(self, sql: str, fmt: str, params: Mapping[str, str]) -> bytes:
        """The whole result of a statement the engine cannot stream (DDL, SHOW, ...)."""
        try:
            return bytes(self._handle.query(self._tag + sql, fmt, params=dict(params)).bytes())
        except Exception as exc:
            raise self._error(exc) from exc

    def stream(self, sql: str, fmt: str, params: Mapping[str, str]) -> Iterator[bytes]:
        """The result in pieces as the engine produces them; the first piece is fetched before this returns,
        so most errors surface here rather than mid-stream."""
        try:
            result = self._handle.send_query(self._tag + sql, fmt, params=dict(params))
            first = result.fetch()
        except Exception as exc:
            raise self._error(exc) from exc
        return self._rest(result, first)

    def _rest(self, result: Any, first: Any) -> Iterator[bytes]:
        piece = first
        try:
            while piece is not None:
                data = bytes(piece.bytes())
                if data:
                    yield data
                try:
                    piece = result.fetch()
                except Exception as exc:
                    raise self._error(exc) from exc
        finally:
            result.close()

    def insert(self, sql: str, fmt: str, data: Iterator[bytes]) -> None:
        """Streams ``data`` (in ``fmt``) into the INSERT ``sql`` (without its FORMAT clause)."""
        try:
            inserter = self._handle.send_insert(self._tag + sql, fmt)
        except Exception as exc:
            raise self._error(exc) from exc
        try:
            for piece in data:
                inserter.append(piece)
            inserter.finish()
        except EndpointError:
            inserter.cancel()
            raise
        except Exception as exc:
            inserter.cancel()
            raise self._error(exc) from exc

    def close(self) -> None:
        self._handle.close()
