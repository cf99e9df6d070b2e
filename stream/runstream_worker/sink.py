"""ClickHouse sink: the worker's only I/O with ClickHouse, and nothing else (no retry, no counting).

``write`` inserts one batch into every table it touches. A batch is idempotent to retry: each
insert carries a deduplication token (the runner's, naming the records it holds), and the run,
param and summary tables are ReplacingMergeTree. A batch of points spread over more partitions than
the server takes in one insert (``max_partitions_per_insert_block``) goes in as several inserts of
whole partitions, each with a token of its own made from the batch's and its partitions'.

The way back: ``stored_records`` finds which records (producer id and sequence number) already have
rows, in which partitions and under which token; ``repair`` inserts the rows stored under a token
once more, under that token, which fills the materialized views a killed insert left short and
changes nothing where they are whole. ``running_runs`` reads back the runs stored as running, to seed
the liveness tracker.
"""

from __future__ import annotations

import itertools
import operator
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.settings import ClickHouseSettings
from runstream_worker.decode import RecordId, StoredRows
from runstream_worker.rows import RowBatch
from runstream_worker.tables import alerts, hardware, metrics, params, pipeline_health, runs, summary

POINT_TABLES: dict[str, ModuleType] = {"metrics": metrics, "hardware": hardware}
"""The append-only tables, whose rows a replay would double, by name."""

# Replays are found in the rows themselves: a part is written whole or not at all, so a worker
# killed mid-insert leaves, per partition, either a record's rows (found here) or none.
_STORED_QUERY = """
SELECT producer_id, seq, toUInt32(_partition_id), insert_token, count() FROM {table:Identifier}
WHERE (team, project, run_id) IN {runs:Array(Tuple(String, String, String))}
  AND producer_id IN {producers:Array(String)} AND seq IN {seqs:Array(UInt64)}
GROUP BY producer_id, seq, _partition_id, insert_token
"""


def _dedup(token: str | None) -> dict[str, str | int]:
    if not token:
        return {}
    # The token also covers the rollups the table's materialized views feed.
    return {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}


def _pick(column: list[Any], index: list[int]) -> list[Any]:
    if len(index) == 1:
        return [column[index[0]]]
    return list(operator.itemgetter(*index)(column))


def split_by_partition(
    table: ModuleType, columns: list[list[Any]], limit: int
) -> Iterator[tuple[str | None, list[list[Any]]]]:
    """``columns`` of a point table in pieces of at most ``limit`` whole partitions (0: no limit),
    each with the name of its partitions (``first-last`` ids), or the columns as they are (None).

    Most batches fall in one or two partitions, which the range of their times alone tells; only a
    batch that may span more than ``limit`` has its rows grouped, column-wise."""
    ts = columns[table.TS]
    if limit <= 0 or not ts or table.partition_span(min(ts), max(ts)) <= limit:
        yield None, columns
        return
    ids = table.partition_ids(ts)
    order = np.argsort(ids, kind="stable")
    keys, starts = np.unique(ids[order], return_index=True)
    bounds = [*starts[::limit].tolist(), len(ts)]
    for piece, (start, stop) in enumerate(itertools.pairwise(bounds)):
        index = order[start:stop].tolist()
        first, last = keys[piece * limit], keys[min((piece + 1) * limit, len(keys)) - 1]
        yield f"{first}-{last}", [_pick(column, index) for column in columns]


class ClickHouseSink:
    """Writes row batches; one client, used by one thread at a time (chDB is single-session)."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self._settings = settings
        self._client: Client | None = None
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
        select = ", ".join("toUnixTimestamp64Milli(ts)" if c == "ts" else c for c in table.COLUMNS)
        with self._lock:
            client = self._ensure_client()
            stored = client.query(
                f"SELECT {select} FROM {name} WHERE insert_token = {{token:String}}",  # noqa: S608 - names are ours
                parameters={"token": token},
            )
            columns = [list(column) for column in stored.result_columns]
            if not columns or not columns[0]:
                return 0
            client.insert(name, columns, column_names=table.COLUMNS, column_oriented=True, settings=_dedup(token))
        return len(columns[0])

    def running_runs(self) -> list[runs.RunningRun]:
        """Runs stored as running: their identity, last heartbeat, last step and newest version."""
        with self._lock:
            result = self._ensure_client().query(runs.RUNNING_QUERY)
        return [runs.running_run(values) for values in result.result_rows]

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
            client = self._ensure_client()
            for name, columns in (("metrics", rows.metrics), ("hardware", rows.hardware)):
                if not columns[0]:
                    continue
                table = POINT_TABLES[name]
                for partitions, piece in split_by_partition(table, columns, limit):
                    piece_token = None if token is None else f"{name}:{token}"
                    if piece_token is not None and partitions is not None:
                        piece_token = f"{piece_token}:{partitions}"
                    client.insert(
                        name, piece, column_names=table.COLUMNS, column_oriented=True, settings=_dedup(piece_token)
                    )
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
