"""Wire format v2's binary columns read as numpy arrays: no Python object per point.

``numpy.frombuffer`` views a record's bytes as they are, in the little-endian column types of the
core (``runstream_core.events``); reading a record costs a few vectorised passes for its bounds
(``check_column_bounds``, the rule the SDK's plain-Python reader applies too). Names stay
dictionary-encoded (the record's keys and an id per point) until a table asks for them per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import msgspec
import numpy as np
from numpy.typing import NDArray

from runstream_core.columns import check_column_bounds
from runstream_core.events import (
    IDS_TYPE,
    STEPS_TYPE,
    TS_OFFSETS_TYPE,
    VALUES_TYPE,
    HardwareColumns,
    MetricColumns,
    item_size,
)

G = TypeVar("G", bound=np.generic)


def _column(data: bytes, column_type: str, native: type[G]) -> NDArray[G]:
    # A view of the record's bytes; converted only on a big-endian host, where the types differ.
    return np.frombuffer(data, dtype=np.dtype(column_type)).astype(native, copy=False)


def _names(names: list[str], ids: NDArray[np.uint16]) -> NDArray[np.object_]:
    return np.asarray(names, dtype=object)[ids] if len(ids) else np.empty(0, dtype=object)


@dataclass(frozen=True)
class MetricArrays:
    """A ``MetricColumns`` record's points: point ``i`` is (keys[key_ids[i]], steps[i], ts_ms[i], values[i])."""

    keys: list[str]
    key_ids: NDArray[np.uint16]
    steps: NDArray[np.int64]
    ts_ms: NDArray[np.int64]
    values: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.key_ids)

    def key_per_point(self) -> NDArray[np.object_]:
        """Each point's key (the record's own ``str`` objects, not copies)."""
        return _names(self.keys, self.key_ids)


@dataclass(frozen=True)
class HardwareArrays:
    """A ``HardwareColumns`` record's readings: reading ``i`` is
    (ts_ms[i], keys[key_ids[i]], devices[device_ids[i]], values[i])."""

    keys: list[str]
    key_ids: NDArray[np.uint16]
    devices: list[str]
    device_ids: NDArray[np.uint16]
    ts_ms: NDArray[np.int64]
    values: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.key_ids)

    def key_per_point(self) -> NDArray[np.object_]:
        return _names(self.keys, self.key_ids)

    def device_per_point(self) -> NDArray[np.object_]:
        return _names(self.devices, self.device_ids)


def _times(record: MetricColumns | HardwareColumns) -> tuple[NDArray[np.int64], int]:
    offsets = _column(record.ts_offsets_ms, TS_OFFSETS_TYPE, np.uint32)
    largest = int(offsets.max()) if len(offsets) else 0
    return offsets.astype(np.int64) + record.ts_base_ms, largest


def metric_arrays(record: MetricColumns, *, check: bool = True) -> MetricArrays:
    """The record's columns as arrays, after checking its points' bounds unless ``check`` is false (a record
    ``decode`` passed): ``msgspec.ValidationError``, naming the field, for an id out of range, a negative
    step or a time past 2299."""
    key_ids = _column(record.key_ids, IDS_TYPE, np.uint16)
    steps = _column(record.steps, STEPS_TYPE, np.int64)
    ts_ms, largest_offset = _times(record)
    n = len(key_ids)
    if check:
        check_column_bounds(
            record,
            key_id=int(key_ids.max()) if n else -1,
            step=int(steps.min()) if n else 0,
            ts_offset=largest_offset,
        )
    return MetricArrays(
        keys=record.keys,
        key_ids=key_ids,
        steps=steps,
        ts_ms=ts_ms,
        values=_column(record.values, VALUES_TYPE, np.float64),
    )


def hardware_arrays(record: HardwareColumns, *, check: bool = True) -> HardwareArrays:
    """The record's columns as arrays, after checking its readings' bounds (as ``metric_arrays``)."""
    key_ids = _column(record.key_ids, IDS_TYPE, np.uint16)
    device_ids = _column(record.device_ids, IDS_TYPE, np.uint16)
    ts_ms, largest_offset = _times(record)
    n = len(key_ids)
    if check:
        check_column_bounds(
            record,
            key_id=int(key_ids.max()) if n else -1,
            device_id=int(device_ids.max()) if n else -1,
            ts_offset=largest_offset,
        )
    return HardwareArrays(
        keys=record.keys,
        key_ids=key_ids,
        devices=record.devices,
        device_ids=device_ids,
        ts_ms=ts_ms,
        values=_column(record.values, VALUES_TYPE, np.float64),
    )


def point_count(record: MetricColumns | HardwareColumns) -> int:
    """Points (readings) the record holds."""
    return len(record.values) // item_size(VALUES_TYPE)


def times(record: MetricColumns | HardwareColumns) -> NDArray[np.int64]:
    """Each point's time in epoch milliseconds."""
    return _times(record)[0]


def where(record: MetricColumns | HardwareColumns, keep: NDArray[np.bool_]) -> MetricColumns | HardwareColumns:
    """``record`` with only the points where ``keep`` is true (the dictionaries left as they are)."""

    def pick(data: bytes, column_type: str) -> bytes:
        return np.frombuffer(data, dtype=np.dtype(column_type))[keep].tobytes()

    columns: dict[str, bytes] = {
        "key_ids": pick(record.key_ids, IDS_TYPE),
        "ts_offsets_ms": pick(record.ts_offsets_ms, TS_OFFSETS_TYPE),
        "values": pick(record.values, VALUES_TYPE),
    }
    if isinstance(record, MetricColumns):
        columns["steps"] = pick(record.steps, STEPS_TYPE)
    else:
        columns["device_ids"] = pick(record.device_ids, IDS_TYPE)
    return msgspec.structs.replace(record, **columns)


def check(record: MetricColumns | HardwareColumns) -> None:
    """Refuse a record whose points are out of bounds (``msgspec.ValidationError`` naming the field)."""
    if isinstance(record, MetricColumns):
        metric_arrays(record)
    else:
        hardware_arrays(record)
