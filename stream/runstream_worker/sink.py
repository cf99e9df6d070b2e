"""ClickHouse sink: the worker's only I/O with ClickHouse, and nothing else (no retry, no counting).

``write`` inserts one batch into every table it touches. Point tables (``metrics``, ``hardware``)
go in with no Python work per row, as an Arrow table over their numpy columns (names as
dictionaries): into the embedded engine through its ``Python()`` table function (``INSERT ...
SELECT ... FROM Python(table)`` on a handle of its own, the engine reading the buffers where they
are), into a server as clickhouse-connect's Arrow insert. Their views run side by side
(``parallel_view_processing``). A batch is idempotent to retry: each insert carries a
deduplication token (the runner's, naming the records it holds), and the run, param and summary
tables are ReplacingMergeTree. A batch of points spread over more partitions than the server takes
in one insert (``max_partitions_per_insert_block``) goes in as several inserts of whole partitions,
each with a token of its own made from the batch's and its partitions'. That limit is read from the
server, and read again after a refusal with code 252 (it may have been lowered since).

The way back: ``stored_records`` finds which records (producer id and sequence number) already have
rows, in which partitions and under which token; ``repair`` reads the rows stored under a token
back as Arrow and inserts them once more, the same way, under that token, which fills the
materialized views a killed insert left short and changes nothing where they are whole. ``running_runs`` reads
back the runs stored as running, to seed the liveness tracker.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np
from clickhouse_connect.driver.binding import format_str, quote_identifier
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from runstream_core.clickhouse import connect, engine_connection
from runstream_core.settings import ClickHouseSettings
from runstream_worker.decode import RecordId, StoredRows
from runstream_worker.failures import TOO_MANY_PARTS, error_code
from runstream_worker.rows import RowBatch
from runstream_worker.tables import alerts, hardware, metrics, params, pipeline_health, runs, summary
from runstream_worker.tables._points import Arrays, arrow_table, row_count, take

POINT_TABLES: dict[str, ModuleType] = {"metrics": metrics, "hardware": hardware}
"""The append-only tables, whose rows a replay would double, by name."""

POINT_INSERT_SETTINGS: dict[str, str | int] = {"parallel_view_processing": 1}
"""A point table feeds several views; they run side by side rather than one after the other."""

# Replays are found in the rows themselves: a part is written whole or not at all, so a worker
# killed mid-insert leaves, per partition, either a record's rows (found here) or none.
_STORED_QUERY = """
SELECT producer_id, seq, toUInt32(_partition_id), insert_token, count() FROM {table:Identifier}
WHERE (team, project, run_id) IN {runs:Array(Tuple(String, String, String))}
  AND producer_id IN {producers:Array(String)} AND seq IN {seqs:Array(UInt64)}
GROUP BY producer_id, seq, _partition_id, insert_token
"""

# The skip index is on the token's hash (migration 0008): hashing the dictionary of a
# LowCardinality column costs next to nothing on insert, indexing the strings themselves did.
_BY_INSERT_TOKEN = "cityHash64(insert_token) = cityHash64({token:String}) AND insert_token = {token:String}"  # noqa: S105 - a filter, not a secret


def _dedup(token: str | None) -> dict[str, str | int]:
    if not token:
        return {}
    # The token also covers the rollups the table's materialized views feed.
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


def split_by_partition(table: ModuleType, columns: Arrays, limit: int) -> Iterator[tuple[str | None, Arrays]]:
    """``columns`` of a point table in pieces of at most ``limit`` whole partitions (0: no limit),
    each with the name of its partitions (``first-last`` ids), or the columns as one piece (None).

    Most batches fall in one partition, which the range of their times alone tells. Rows of more
    than one are ordered by partition (stable), the order ``repair`` reads stored rows back in, so
    that a repeated insert is cut into parts as the first one was."""
    ts = columns["ts"]
    assert isinstance(ts, np.ndarray)  # a number column
    span = table.partition_span(int(ts.min()), int(ts.max())) if len(ts) else 0
    if span <= 1:
        yield None, columns
        return
    ids = table.partition_ids(ts)
    order = np.argsort(ids, kind="stable")
    if limit <= 0 or span <= limit:
        yield None, take(columns, order)
        return
    keys, starts = np.unique(ids[order], return_index=True)
    bounds = [*starts[::limit].tolist(), len(ts)]
    for piece, (start, stop) in enumerate(itertools.pairwise(bounds)):
        first, last = keys[piece * limit], keys[min((piece + 1) * limit, len(keys)) - 1]
        yield f"{first}-{last}", take(columns, order[start:stop])


def _settings_clause(settings: Mapping[str, str | int]) -> str:
    return ", ".join(
        f"{name} = {value if isinstance(value, int) else format_str(value)}" for name, value in settings.items()
    )


class ClickHouseSink:
    """Writes row batches; one client (and, embedded, one engine handle for point inserts), used by
    one thread at a time."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._engine: Any = None
        self._partition_limit: int | None = None
        self._lock = threading.Lock()

    def _ensure_client(self) -> Client:
        if self._client is None:
            self._client = connect(self._settings)
        return self._client

    def partition_limit(self) -> int:
        """Partitions the server takes in one insert (``max_partitions_per_insert_block``; 0: any)."""
        if self._partition_limit is None:
            with self._lock:
                value = self._ensure_client().query(
                    "SELECT value FROM system.settings WHERE name = 'max_partitions_per_insert_block'"
                )
            rows = value.result_rows
            self._partition_limit = int(rows[0][0]) if rows else 100
        return self._partition_limit

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> list[StoredRows]:
        """Rows already stored of the records ``ids`` (of the runs ``run_keys``: team, project, run id),
        per record, partition and insert token."""
        if not ids:
            return []
        parameters = {
            "runs": sorted(run_keys),
            "producers": sorted({p for p, _ in ids}),
            "seqs": sorted({s for _, s in ids}),
        }
        found: list[Any] = []
        with self._lock:
            client = self._ensure_client()
            for table in POINT_TABLES:
                result = client.query(_STORED_QUERY, parameters={**parameters, "table": table})
                found.extend(result.result_rows)
        # The query matches producers x seqs; keep exact pairs only.
        return [
            StoredRows(str(p), int(s), int(part), str(token), int(n)) for p, s, part, token, n in found if (p, s) in ids
        ]

    def repair(self, token: str) -> int:
        """Insert the point rows stored under ``token`` (as the sink names them: ``<table>:...``)
        again under that token; returns how many rows that was.

        Only safe while the server still remembers the token (its deduplication window): the raw
        table and every view that was written then skip the insert, the views left short take it.
        """
        name = token.split(":", 1)[0]
        table = POINT_TABLES.get(name)
        if table is None:
            return 0
        columns = ", ".join(quote_identifier(c) for c in table.COLUMNS)
        with self._lock:
            client = self._ensure_client()
            # Ordered as the sink orders an insert's rows (by partition), and times as timestamps:
            # a part's deduplication name includes its partition.
            stored = client.query_arrow(
                f"SELECT {columns} FROM {name} WHERE {_BY_INSERT_TOKEN} ORDER BY _partition_id",  # noqa: S608
                parameters={"token": token},
            )
            if not stored.num_rows:
                return 0
            # One chunk, as the first insert had: the engine reads a table chunk by chunk.
            self._insert_arrow(name, stored.combine_chunks(), {**_dedup(token), **POINT_INSERT_SETTINGS})
        return int(stored.num_rows)

    def running_runs(self) -> list[runs.RunningRun]:
        """Runs stored as running: their identity, last heartbeat, last step and newest version."""
        with self._lock:
            result = self._ensure_client().query(runs.RUNNING_QUERY)
        return [runs.running_run(values) for values in result.result_rows]

    def insert_points(self, name: str, columns: Arrays, settings: Mapping[str, str | int]) -> None:
        """Insert a point table's ``columns`` (``ts`` in epoch milliseconds) with the insert's
        ``settings``; the caller holds the lock."""
        if row_count(columns):
            self._insert_arrow(name, arrow_table(columns), settings)

    def _insert_arrow(self, name: str, table: Any, settings: Mapping[str, str | int]) -> None:
        names = ", ".join(quote_identifier(c) for c in POINT_TABLES[name].COLUMNS)
        if not self._settings.target.embedded:
            self._ensure_client().insert_arrow(name, table, settings=dict(settings))
            return
        if self._engine is None:
            self._engine = engine_connection(self._settings)
        # Python() finds the table by its name among this function's locals.
        runstream_points = table  # noqa: F841 - read by the engine
        sql = f"INSERT INTO {name} ({names}) SELECT {names} FROM Python(runstream_points)"  # noqa: S608
        if settings:
            sql += f" SETTINGS {_settings_clause(settings)}"
        try:
            self._engine.query(sql)
        except Exception as exc:
            # As clickhouse-connect raises the engine's errors: its code on the exception.
            raise DatabaseError(str(exc), code=error_code(exc)) from exc

    def _rows(self, query: str, parameters: dict[str, Any]) -> list[Any]:
        with self._lock:
            return list(self._ensure_client().query(query, parameters=parameters).result_rows)

    def alert_states(self, keys: set[tuple[str, str, str]]) -> list[Any]:
        """Stored alert state of these runs: (team, project, run id, entry, blob) rows."""
        return self._rows(alerts.STATE_QUERY, {"runs": sorted(keys)})

    def run_infos(self, keys: set[tuple[str, str, str]]) -> list[Any]:
        """Group, tags, status and name of these runs as stored: (team, project, run id, group, tags, status, name)."""
        return self._rows(alerts.RUN_INFO_QUERY, {"runs": sorted(keys)})

    def alert_runs_since(self, since_ms: int) -> list[Any]:
        """Runs whose alert state changed since ``since_ms``: (team, project, run id) rows."""
        return self._rows(alerts.OPEN_RUNS_QUERY, {"since": since_ms})

    def pending_alerts(self, since_ms: int) -> list[alerts.AlertMessage]:
        """Alert messages stored since ``since_ms`` whose webhooks were not reached yet."""
        return [alerts.pending_message(row) for row in self._rows(alerts.PENDING_QUERY, {"since": since_ms})]

    def write(self, rows: RowBatch, token: str | None) -> None:
        """Insert ``rows``; ``token`` names the records they come from, so a retried batch is not
        stored twice."""
        limit = self.partition_limit() if rows.metric_points or rows.hardware_readings else 0
        with self._lock:
            for name, points in (("metrics", rows.metrics), ("hardware", rows.hardware)):
                if not len(points):
                    continue
                table = POINT_TABLES[name]
                for partitions, piece in split_by_partition(table, points.arrays(), limit):
                    piece_token = None if token is None else f"{name}:{token}"
                    if piece_token is not None and partitions is not None:
                        piece_token = f"{piece_token}:{partitions}"
                    try:
                        self.insert_points(name, piece, {**_dedup(piece_token), **POINT_INSERT_SETTINGS})
                    except Exception as exc:
                        if error_code(exc) == TOO_MANY_PARTS:
                            # Too many parts, or too many partitions for one insert: the server's
                            # limit may have been lowered since it was read; read it again on retry.
                            self._partition_limit = None
                        raise
            client = self._ensure_client()
            if rows.params:
                client.insert("params", rows.params, column_names=params.COLUMNS)
            if rows.summary:
                client.insert("summary", rows.summary, column_names=summary.COLUMNS)
            if rows.health:
                client.insert("pipeline_health", rows.health, column_names=pipeline_health.COLUMNS)
            if rows.runs:
                client.insert("runs", rows.runs, column_names=runs.COLUMNS)
            if rows.alert_state:
                client.insert("alert_state", rows.alert_state, column_names=alerts.STATE_COLUMNS)
            if rows.alerts:
                client.insert("alerts", rows.alerts, column_names=alerts.COLUMNS)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._engine is not None:
                self._engine.close()
                self._engine = None
