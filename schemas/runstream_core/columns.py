"""Wire format v2's binary columns in plain Python: points written into ``MetricColumns`` and
``HardwareColumns`` records and read back, with the standard library only (the SDK must not need
numpy; the worker reads the same bytes with numpy, in ``runstream_worker.columns``).

Writers take rows: points that share a step and a time, as one ``log()`` call makes them. A row's
step and time are packed once for all its points and its keys once per distinct tuple of keys, so
a loop that logs the same keys every step costs no Python work per point. Items are written with
explicit little-endian ``struct`` formats (the same bytes on any host) and read with ``array``,
byte-swapped on a big-endian host. Records are cut to stay within the format's bounds: at most
``MAX_KEYS_PER_BATCH`` distinct keys (and devices) and ``MAX_TS_OFFSET_MS`` between the earliest and
the latest time. Every reader checks the points with ``check_column_bounds``, the one rule the
worker's reader applies too.
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec

from runstream_core.events import (
    IDS_TYPE,
    MAX_EPOCH_MS,
    MAX_KEYS_PER_BATCH,
    MAX_POINTS_PER_BATCH,
    MAX_TS_OFFSET_MS,
    STEPS_TYPE,
    TS_OFFSETS_TYPE,
    VALUES_TYPE,
    HardwareBatch,
    HardwareColumns,
    MetricBatch,
    MetricColumns,
    item_size,
)

_BIG_ENDIAN = sys.byteorder == "big"
# struct's codes with "<" are little-endian at the standard sizes whatever the host.
_STRUCT_CODES = {"f8": "d", "i8": "q", "u4": "I", "u2": "H"}
_ARRAY_KINDS = {"f": "fd", "i": "bhilq", "u": "BHILQ"}
_VALUE_SIZE = item_size(VALUES_TYPE)
_STEP = struct.Struct("<" + _STRUCT_CODES[STEPS_TYPE[1:]])
_OFFSET = struct.Struct("<" + _STRUCT_CODES[TS_OFFSETS_TYPE[1:]])
_ROW_FORMATS: dict[tuple[str, int], struct.Struct] = {}
_CACHED_ROW = 1024  # rows up to this wide keep their compiled format


def _row_format(column_type: str, n: int) -> struct.Struct:
    found = _ROW_FORMATS.get((column_type, n))
    if found is None:
        found = struct.Struct(f"<{n}{_STRUCT_CODES[column_type[1:]]}")
        if n <= _CACHED_ROW:
            _ROW_FORMATS[column_type, n] = found
    return found


def pack_values(values: Sequence[float]) -> bytes:
    """``values`` as a values column: little-endian binary64, ints converted, bools as 0 and 1, NaN (with
    its payload) and infinities as they are. Raises ``struct.error`` (``OverflowError`` on some Pythons) for
    an int beyond a float's range or anything that is no number."""
    return _row_format(VALUES_TYPE, len(values)).pack(*values)


def _pack(column_type: str, items: Sequence[int]) -> bytes:
    return _row_format(column_type, len(items)).pack(*items)


def _array_code(column_type: str) -> str:
    size = item_size(column_type)
    return next(code for code in _ARRAY_KINDS[column_type[1]] if array.array(code).itemsize == size)


_ARRAY_CODES = {kind: _array_code(kind) for kind in (VALUES_TYPE, STEPS_TYPE, TS_OFFSETS_TYPE, IDS_TYPE)}


def read_column(data: bytes, column_type: str) -> array.array[Any]:
    """A binary column's items, in the host's byte order."""
    items = array.array(_ARRAY_CODES[column_type])
    items.frombytes(data)
    if _BIG_ENDIAN:
        items.byteswap()
    return items


def check_column_bounds(
    event: MetricColumns | HardwareColumns,
    *,
    key_id: int = -1,
    device_id: int = -1,
    step: int = 0,
    ts_offset: int = 0,
) -> None:
    """Refuse a record whose points break the bounds its struct cannot check without reading them:
    ``key_id`` and ``device_id`` are the largest ids, ``step`` the smallest step and ``ts_offset`` the
    largest time offset (the defaults: no points). Raises ``msgspec.ValidationError`` naming the field."""
    if key_id >= len(event.keys):
        raise msgspec.ValidationError(
            f"key id {key_id} is out of range: the record lists {len(event.keys)} keys - at `$.key_ids`"
        )
    if isinstance(event, HardwareColumns) and device_id >= len(event.devices):
        raise msgspec.ValidationError(
            f"device id {device_id} is out of range: the record lists {len(event.devices)} devices - at `$.device_ids`"
        )
    if step < 0:
        raise msgspec.ValidationError(f"step {step} is negative - at `$.steps`")
    if event.ts_base_ms + ts_offset > MAX_EPOCH_MS:
        raise msgspec.ValidationError(
            f"ts_base_ms {event.ts_base_ms} + offset {ts_offset} is past {MAX_EPOCH_MS} (the end of 2299)"
            " - at `$.ts_offsets_ms`"
        )


# -- writing ---------------------------------------------------------------------------------------
_IOTA = struct.pack(f"<{MAX_KEYS_PER_BATCH}H", *range(MAX_KEYS_PER_BATCH))
"""The ids 0, 1, 2... as an ids column: what a row of names all new to the record gets, sliced."""


class _Dictionary:
    """Names to ids within one record (dictionary encoding)."""

    __slots__ = ("index",)

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def new(self, names: Sequence[str]) -> list[str] | None:
        """The names not listed yet, in order, or None when listing them would pass ``MAX_KEYS_PER_BATCH``."""
        index = self.index
        fresh = dict.fromkeys(names)
        new = list(fresh) if not index or index.keys().isdisjoint(fresh) else [n for n in fresh if n not in index]
        return new if len(index) + len(new) <= MAX_KEYS_PER_BATCH else None

    def ids(self, names: Sequence[str], new: list[str]) -> bytes:
        """The ids column of ``names``, after listing ``new`` (``self.new(names)``)."""
        index = self.index
        start = len(index)
        index.update(zip(new, range(start, start + len(new)), strict=True))
        if len(new) == len(names):  # every name new and listed once (a record's first row, a wide row)
            return _IOTA[2 * start : 2 * (start + len(new))]
        return _pack(IDS_TYPE, list(map(index.__getitem__, names)))


class _Times:
    """One record's times as a base (the earliest time) and an offset per point."""

    __slots__ = ("base", "latest", "offsets")

    def __init__(self) -> None:
        self.base = -1  # no point yet
        self.latest = -1
        self.offsets = bytearray()

    def fits(self, ts_ms: int) -> bool:
        """Whether the record's span stays within ``MAX_TS_OFFSET_MS`` with a point at ``ts_ms``."""
        base = self.base
        if ts_ms >= base:
            return base < 0 or ts_ms - base <= MAX_TS_OFFSET_MS
        return self.latest - ts_ms <= MAX_TS_OFFSET_MS

    def add(self, ts_ms: int, n: int) -> None:
        if self.base < 0:
            self.base = self.latest = ts_ms
        elif ts_ms < self.base:  # the clock went back: every offset so far grows by the difference
            shift = self.base - ts_ms
            shifted = [offset + shift for offset in read_column(bytes(self.offsets), TS_OFFSETS_TYPE)]
            self.offsets = bytearray(_pack(TS_OFFSETS_TYPE, shifted))
            self.base = ts_ms
        elif ts_ms > self.latest:
            self.latest = ts_ms
        self.offsets += _OFFSET.pack(ts_ms - self.base) * n


class MetricColumnsWriter:
    """One ``MetricColumns`` record being written, a row at a time."""

    __slots__ = ("_ids", "_keys", "_row_ids", "_row_keys", "_steps", "_times", "_values", "points")

    def __init__(self) -> None:
        self._keys = _Dictionary()
        self._times = _Times()
        self._ids = bytearray()
        self._steps = bytearray()
        self._values = bytearray()
        self._row_keys: Sequence[str] | None = None
        self._row_ids = b""
        self.points = 0

    def add(self, step: int, ts_ms: int, keys: Sequence[str], values: bytes) -> bool:
        """Append a row: ``keys`` logged at ``step`` and ``ts_ms`` with ``values`` (``pack_values``).
        False, with nothing appended, when the row would take the record past ``MAX_KEYS_PER_BATCH``
        distinct keys or ``MAX_TS_OFFSET_MS`` between its earliest and latest time."""
        n = len(keys)
        if not n:
            return True
        if not self._times.fits(ts_ms):
            return False
        if keys is not self._row_keys and keys != self._row_keys:  # a loop logs the same keys every step
            new = self._keys.new(keys)
            if new is None:
                return False
            self._row_keys, self._row_ids = keys, self._keys.ids(keys, new)
        self._times.add(ts_ms, n)
        self._ids += self._row_ids
        self._steps += _STEP.pack(step) * n
        self._values += values
        self.points += n
        return True

    def build(self, **envelope: Any) -> MetricColumns:
        """The record, with ``envelope``'s fields (producer id, sequence number, rank, run id, team, project)."""
        return MetricColumns(
            keys=list(self._keys.index),
            key_ids=bytes(self._ids),
            steps=bytes(self._steps),
            ts_base_ms=max(self._times.base, 0),
            ts_offsets_ms=bytes(self._times.offsets),
            values=bytes(self._values),
            **envelope,
        )


class HardwareColumnsWriter:
    """One ``HardwareColumns`` record being written, a sample (readings of one time) at a time."""

    __slots__ = ("_device_ids", "_devices", "_key_ids", "_keys", "_times", "_values", "points")

    def __init__(self) -> None:
        self._keys = _Dictionary()
        self._devices = _Dictionary()
        self._times = _Times()
        self._key_ids = bytearray()
        self._device_ids = bytearray()
        self._values = bytearray()
        self.points = 0

    def add(self, ts_ms: int, keys: Sequence[str], devices: Sequence[str], values: bytes) -> bool:
        """Append readings taken at ``ts_ms``; False as ``MetricColumnsWriter.add``."""
        if not keys:
            return True
        new_keys, new_devices = self._keys.new(keys), self._devices.new(devices)
        if new_keys is None or new_devices is None or not self._times.fits(ts_ms):
            return False
        self._times.add(ts_ms, len(keys))
        self._key_ids += self._keys.ids(keys, new_keys)
        self._device_ids += self._devices.ids(devices, new_devices)
        self._values += values
        self.points += len(keys)
        return True

    def build(self, **envelope: Any) -> HardwareColumns:
        """The record, with ``envelope``'s fields (producer id, sequence number, rank, run, host, interval...)."""
        return HardwareColumns(
            ts_base_ms=max(self._times.base, 0),
            ts_offsets_ms=bytes(self._times.offsets),
            keys=list(self._keys.index),
            key_ids=bytes(self._key_ids),
            devices=list(self._devices.index),
            device_ids=bytes(self._device_ids),
            values=bytes(self._values),
            **envelope,
        )


class _Writer(Protocol):
    points: int


W = TypeVar("W", bound=_Writer)


class _Records(Generic[W]):
    """Rows cut into records of at most ``limit`` points, each within the format's bounds."""

    def __init__(self, writer: Callable[[], W], limit: int) -> None:
        self._writer = writer
        self._limit = min(limit, MAX_POINTS_PER_BATCH)
        self._open = writer()
        self._done: list[W] = []
        self._done_points = 0

    def __len__(self) -> int:
        """Points held."""
        return self._done_points + self._open.points

    def take(self) -> list[W]:
        """The records written so far, the last one unfinished; they are no longer held."""
        done = self._done
        if self._open.points:
            done.append(self._open)
        self._open, self._done, self._done_points = self._writer(), [], 0
        return done

    def _close(self) -> None:
        self._done.append(self._open)
        self._done_points += self._open.points
        self._open = self._writer()

    def _fill(self, n: int, put: Callable[[W, int, int], bool]) -> None:
        """Append a row of ``n`` points, ``put(writer, start, stop)`` appending its points ``start:stop``."""
        start, cap = 0, n
        while start < n:
            writer = self._open
            stop = min(n, start + cap, start + self._limit - writer.points)
            if put(writer, start, stop):
                start = stop
                if writer.points >= self._limit:
                    self._close()
            elif writer.points:
                self._close()  # a new record takes it
            else:
                cap = max(1, (stop - start) // 2)  # more distinct keys than one record holds: cut the row


class MetricRecords(_Records[MetricColumnsWriter]):
    """Metric rows cut into ``MetricColumns`` records of at most ``limit`` points."""

    def __init__(self, limit: int = MAX_POINTS_PER_BATCH) -> None:
        super().__init__(MetricColumnsWriter, limit)

    def add(self, step: int, ts_ms: int, keys: Sequence[str], values: bytes) -> None:
        """Append a row (``MetricColumnsWriter.add``), starting new records where it does not fit."""
        writer = self._open
        n = len(keys)
        if writer.points + n <= self._limit and writer.add(step, ts_ms, keys, values):  # the usual row
            if writer.points >= self._limit:
                self._close()
            return
        size = _VALUE_SIZE
        self._fill(n, lambda w, a, b: w.add(step, ts_ms, keys[a:b], values[a * size : b * size]))


class HardwareRecords(_Records[HardwareColumnsWriter]):
    """Hardware samples cut into ``HardwareColumns`` records of at most ``limit`` readings."""

    def __init__(self, limit: int = MAX_POINTS_PER_BATCH) -> None:
        super().__init__(HardwareColumnsWriter, limit)

    def add(self, ts_ms: int, keys: Sequence[str], devices: Sequence[str], values: bytes) -> None:
        size = _VALUE_SIZE
        self._fill(len(keys), lambda w, a, b: w.add(ts_ms, keys[a:b], devices[a:b], values[a * size : b * size]))


def _runs(*columns: Sequence[int]) -> list[tuple[int, int]]:
    """Ranges of consecutive points equal in every one of ``columns`` (a v1 batch's rows)."""
    n = len(columns[0])
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or any(column[i] != column[start] for column in columns):
            out.append((start, i))
            start = i
    return out


@overload
def to_columns(batch: MetricBatch) -> list[MetricColumns]: ...
@overload
def to_columns(batch: HardwareBatch) -> list[HardwareColumns]: ...
def to_columns(batch: MetricBatch | HardwareBatch) -> list[MetricColumns] | list[HardwareColumns]:
    """A v1 batch as v2 records (one, unless it breaks the v2 bounds on keys or time span), with the same
    envelope. Raises ``struct.error`` (or ``OverflowError``) for a value no float holds."""
    values = pack_values(batch.values)
    size = _VALUE_SIZE
    if isinstance(batch, MetricBatch):
        metric = MetricRecords()
        for a, b in _runs(batch.steps, batch.ts_ms):
            metric.add(batch.steps[a], batch.ts_ms[a], batch.keys[a:b], values[a * size : b * size])
        envelope = _envelope(batch, ("run_id", "team", "project"))
        return [writer.build(**envelope) for writer in metric.take()]
    hardware = HardwareRecords()
    for a, b in _runs(batch.ts_ms):
        hardware.add(batch.ts_ms[a], batch.keys[a:b], batch.devices[a:b], values[a * size : b * size])
    envelope = _envelope(batch, ("run_id", "team", "project", "host", "user", "interval_ms"))
    return [writer.build(**envelope) for writer in hardware.take()]


def _envelope(event: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    names = ("producer_id", "seq", "rank", *fields)
    return {name: getattr(event, name) for name in names}


# -- reading ---------------------------------------------------------------------------------------
@overload
def to_batch(record: MetricColumns) -> MetricBatch: ...
@overload
def to_batch(record: HardwareColumns) -> HardwareBatch: ...
def to_batch(record: MetricColumns | HardwareColumns) -> MetricBatch | HardwareBatch:
    """A v2 record's points as the v1 batch of the same envelope (lists, a Python object per point), after
    ``check_column_bounds``. Raises ``msgspec.ValidationError`` naming the field of a point out of bounds."""
    key_ids = read_column(record.key_ids, IDS_TYPE)
    offsets = read_column(record.ts_offsets_ms, TS_OFFSETS_TYPE)
    values = read_column(record.values, VALUES_TYPE).tolist()
    base = record.ts_base_ms
    if isinstance(record, MetricColumns):
        steps = read_column(record.steps, STEPS_TYPE)
        check_column_bounds(
            record, key_id=max(key_ids, default=-1), step=min(steps, default=0), ts_offset=max(offsets, default=0)
        )
        keys = record.keys
        return MetricBatch(
            **_envelope(record, ("run_id", "team", "project")),
            keys=[keys[i] for i in key_ids],
            steps=steps.tolist(),
            ts_ms=[base + offset for offset in offsets],
            values=values,
        )
    device_ids = read_column(record.device_ids, IDS_TYPE)
    check_column_bounds(
        record,
        key_id=max(key_ids, default=-1),
        device_id=max(device_ids, default=-1),
        ts_offset=max(offsets, default=0),
    )
    keys, devices = record.keys, record.devices
    return HardwareBatch(
        **_envelope(record, ("run_id", "team", "project", "host", "user", "interval_ms")),
        ts_ms=[base + offset for offset in offsets],
        keys=[keys[i] for i in key_ids],
        devices=[devices[i] for i in device_ids],
        values=values,
    )
