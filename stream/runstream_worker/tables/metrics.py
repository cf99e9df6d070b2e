"""``metrics``: one row per metric point, partitioned by month (``PARTITION BY toYYYYMM(ts)``)."""

from __future__ import annotations

from runstream_core.events import MetricBatch, MetricColumns
from runstream_worker.columns import MetricArrays
from runstream_worker.tables._points import Names, PointColumns
from runstream_worker.tables._time import month_ids, month_span

DTYPES: dict[str, str | type] = {
    "team": object,
    "project": object,
    "run_id": object,
    "key": object,
    "step": "int64",
    "ts": "int64",  # epoch milliseconds: DateTime64(3) ticks
    "value": "float64",
    "producer_id": object,
    "seq": "uint64",
    "rank": "uint32",
}
COLUMNS = tuple(DTYPES)

partition_span = month_span
"""How many partitions a range of times covers."""
partition_ids = month_ids
"""Each time's partition id."""


def columns() -> PointColumns:
    """Empty columns, in the order of ``COLUMNS``."""
    return PointColumns(DTYPES)


def extend(columns: PointColumns, batch: MetricBatch) -> None:
    """Append a v1 batch's points."""
    columns.add(
        len(batch.keys),
        {
            "team": batch.team,
            "project": batch.project,
            "run_id": batch.run_id,
            "producer_id": batch.producer_id,
            "seq": batch.seq,
            "rank": batch.rank,
        },
        {"key": batch.keys, "step": batch.steps, "ts": batch.ts_ms, "value": batch.values},
    )


def extend_arrays(columns: PointColumns, record: MetricColumns, arrays: MetricArrays) -> None:
    """Append a wire format v2 batch's points (``arrays``, read from ``record``), as arrays."""
    columns.add(
        len(arrays),
        {
            "team": record.team,
            "project": record.project,
            "run_id": record.run_id,
            "producer_id": record.producer_id,
            "seq": record.seq,
            "rank": record.rank,
        },
        {"key": Names(arrays.key_ids, arrays.keys), "step": arrays.steps, "ts": arrays.ts_ms, "value": arrays.values},
    )
