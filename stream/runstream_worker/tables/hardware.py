"""``hardware``: one row per hardware reading, partitioned by day (``PARTITION BY toDate(ts)``)."""

from __future__ import annotations

from runstream_core.events import HardwareBatch, HardwareColumns
from runstream_worker.columns import HardwareArrays
from runstream_worker.tables._points import Names, PointColumns
from runstream_worker.tables._time import day_ids, day_span

DTYPES: dict[str, str | type] = {
    "team": object,
    "project": object,
    "run_id": object,
    "host": object,
    "rank": "uint32",
    "key": object,
    "device": object,
    "ts": "int64",  # epoch milliseconds: DateTime64(3) ticks
    "value": "float64",
    "interval_ms": "uint32",
    "producer_id": object,
    "seq": "uint64",
    "user": object,
}
COLUMNS = tuple(DTYPES)

partition_span = day_span
"""How many partitions a range of times covers."""
partition_ids = day_ids
"""Each time's partition id."""


def columns() -> PointColumns:
    """Empty columns, in the order of ``COLUMNS``."""
    return PointColumns(DTYPES)


def _constants(batch: HardwareBatch | HardwareColumns) -> dict[str, object]:
    return {
        "team": batch.team,
        "project": batch.project,
        "run_id": batch.run_id,
        "host": batch.host,
        "rank": batch.rank,
        "interval_ms": batch.interval_ms,
        "producer_id": batch.producer_id,
        "seq": batch.seq,
        "user": batch.user,
    }


def extend(columns: PointColumns, batch: HardwareBatch) -> None:
    """Append a v1 batch's readings."""
    columns.add(
        len(batch.keys),
        _constants(batch),
        {"key": batch.keys, "device": batch.devices, "ts": batch.ts_ms, "value": batch.values},
    )


def extend_arrays(columns: PointColumns, record: HardwareColumns, arrays: HardwareArrays) -> None:
    """Append a wire format v2 batch's readings (``arrays``, read from ``record``), as arrays."""
    columns.add(
        len(arrays),
        _constants(record),
        {
            "key": Names(arrays.key_ids, arrays.keys),
            "device": Names(arrays.device_ids, arrays.devices),
            "ts": arrays.ts_ms,
            "value": arrays.values,
        },
    )
