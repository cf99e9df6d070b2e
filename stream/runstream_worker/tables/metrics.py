"""``metrics``: one row per metric point, partitioned by month (``PARTITION BY toYYYYMM(ts)``)."""

from __future__ import annotations

from typing import Any

from runstream_core.events import MetricBatch
from runstream_worker.tables._time import month_ids, month_span

COLUMNS = ("team", "project", "run_id", "key", "step", "ts", "value", "producer_id", "seq", "rank")

TS = COLUMNS.index("ts")
partition_span = month_span
"""How many partitions a range of times covers."""
partition_ids = month_ids
"""Each time's partition id."""


def columns() -> list[list[Any]]:
    """Empty columns, in the order of ``COLUMNS``."""
    return [[] for _ in COLUMNS]


def extend(columns: list[list[Any]], batch: MetricBatch) -> None:
    """Append the batch's points, column by column."""
    n = len(batch.keys)
    team, project, run_id, key, step, ts, value, producer_id, seq, rank = columns
    team.extend([batch.team] * n)
    project.extend([batch.project] * n)
    run_id.extend([batch.run_id] * n)
    key.extend(batch.keys)
    step.extend(batch.steps)
    ts.extend(batch.ts_ms)  # DateTime64(3) ticks are milliseconds
    value.extend(batch.values)
    producer_id.extend([batch.producer_id] * n)
    seq.extend([batch.seq] * n)
    rank.extend([batch.rank] * n)
