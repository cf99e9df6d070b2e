"""ClickHouse sink: the worker's only I/O with ClickHouse, and nothing else (no retry, no counting).

``write`` inserts one batch into every table it touches. A batch is idempotent to retry: each
insert carries a deduplication token derived from the Kafka offsets it covers, and the run, param
and summary tables are ReplacingMergeTree. A record replayed by a producer (new offsets, same
producer id and sequence number) is found with ``stored_records`` before the batch is written.
``running_runs`` reads back the runs stored as running, to seed the liveness tracker.
"""

from __future__ import annotations

import threading

from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.settings import ClickHouseSettings
from runstream_worker.decode import RecordId
from runstream_worker.rows import RowBatch
from runstream_worker.tables import hardware, metrics, params, pipeline_health, runs, summary

# Replays are found in the rows themselves: a part is written whole or not at all, so a worker
# killed mid-insert leaves either the rows (found here) or nothing (inserted again).
_STORED_QUERY = """
SELECT DISTINCT producer_id, seq FROM metrics
WHERE (team, project, run_id) IN {runs:Array(Tuple(String, String, String))}
  AND producer_id IN {producers:Array(String)} AND seq IN {seqs:Array(UInt64)}
UNION DISTINCT
SELECT DISTINCT producer_id, seq FROM hardware
WHERE (team, project, run_id) IN {runs:Array(Tuple(String, String, String))}
  AND producer_id IN {producers:Array(String)} AND seq IN {seqs:Array(UInt64)}
"""


def _dedup(table: str, token: str | None) -> dict[str, str | int]:
    if not token:
        return {}
    # The token also covers the rollups the table's materialized views feed.
    return {"insert_deduplication_token": f"{table}:{token}", "deduplicate_blocks_in_dependent_materialized_views": 1}


class ClickHouseSink:
    """Writes row batches; one client, used by one thread at a time (chDB is single-session)."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _ensure_client(self) -> Client:
        if self._client is None:
            self._client = connect(self._settings)
        return self._client

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> set[RecordId]:
        """Which of ``ids`` (records of ``run_keys``: team, project, run id) already have rows stored."""
        if not ids:
            return set()
        with self._lock:
            result = self._ensure_client().query(
                _STORED_QUERY,
                parameters={
                    "runs": sorted(run_keys),
                    "producers": sorted({p for p, _ in ids}),
                    "seqs": sorted({s for _, s in ids}),
                },
            )
        # The query matches producers x seqs; keep exact pairs only.
        return {(str(p), int(s)) for p, s in result.result_rows} & ids

    def running_runs(self) -> list[runs.RunningRun]:
        """Runs stored as running: (info, last heartbeat or update in ms, last step)."""
        with self._lock:
            result = self._ensure_client().query(runs.RUNNING_QUERY)
        return [runs.running_run(values) for values in result.result_rows]

    def write(self, rows: RowBatch, token: str | None) -> None:
        """Insert ``rows``; ``token`` names the source offsets so a retried batch is not stored twice."""
        with self._lock:
            client = self._ensure_client()
            if rows.metric_points:
                client.insert(
                    "metrics",
                    rows.metrics,
                    column_names=metrics.COLUMNS,
                    column_oriented=True,
                    settings=_dedup("metrics", token),
                )
            if rows.hardware_readings:
                client.insert(
                    "hardware",
                    rows.hardware,
                    column_names=hardware.COLUMNS,
                    column_oriented=True,
                    settings=_dedup("hardware", token),
                )
            if rows.params:
                client.insert("params", rows.params, column_names=params.COLUMNS)
            if rows.summary:
                client.insert("summary", rows.summary, column_names=summary.COLUMNS)
            if rows.health:
                client.insert("pipeline_health", rows.health, column_names=pipeline_health.COLUMNS)
            if rows.runs:
                client.insert("runs", rows.runs, column_names=runs.COLUMNS)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
