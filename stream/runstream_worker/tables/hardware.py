"""``hardware``: one row per hardware reading, partitioned by day (``PARTITION BY toDate(ts)``)."""

from __future__ import annotations

from typing import Any

from runstream_core.events import HardwareBatch
from runstream_worker.tables._time import day_ids, day_span

COLUMNS = (
    "team",
    "project",
    "run_id",
    "host",
    "rank",
    "key",
    "device",
    "ts",
    "value",
    "interval_ms",
    "producer_id",
    "seq",
    "user",
)

TS = COLUMNS.index("ts")
partition_span = day_span
"""How many partitions a range of times covers."""
partition_ids = day_ids
"""Each time's partition id."""


def columns() -> list[list[Any]]:
    """Empty columns, in the order of ``COLUMNS``."""
    return [[] for _ in COLUMNS]


def extend(columns: list[list[Any]], batch: HardwareBatch) -> None:
    """Append the batch's readings, column by column."""
    n = len(batch.keys)
    team, project, run_id, host, rank, key, device, ts, value, interval_ms, producer_id, seq, user = columns
    team.extend([batch.team] * n)
    project.extend([batch.project] * n)
    run_id.extend([batch.run_id] * n)
    host.extend([batch.host] * n)
    rank.extend([batch.rank] * n)
    key.extend(batch.keys)
    device.extend(batch.devices)
    ts.extend(batch.ts_ms)  # DateTime64(3) ticks are milliseconds
    value.extend(batch.values)
    interval_ms.extend([batch.interval_ms] * n)
    producer_id.extend([batch.producer_id] * n)
    seq.extend([batch.seq] * n)
    user.extend([batch.user] * n)
