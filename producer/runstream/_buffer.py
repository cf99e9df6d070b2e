"""Packing of logged rows into column-wise metric records, with the checks ``log()`` leaves out.

``Run.log`` offers ``(step, time_s, keys, values)`` rows and returns; the sender thread takes them
here, runs ``check_points`` on them (keys, integer ranges) and builds the columns of the records of
the wire format the run sends: ``ColumnPacker`` the lists of ``MetricBatch`` (v1), ``BinaryPacker``
the binary columns of ``MetricColumns`` (v2), where each row's step, time and keys are packed once
for all its points.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from runstream._points import WarnOnce, check_points
from runstream_core.columns import MetricColumnsWriter, MetricRecords, pack_values
from runstream_core.events import MAX_EPOCH_MS

Row = tuple[int, float, tuple[Any, ...], tuple[Any, ...]]
"""(step, time.time(), keys, values) as offered by ``Transport.offer_points``."""


@dataclass
class PointColumns:
    """Parallel columns of points: point ``i`` is (keys[i], steps[i], ts_ms[i], values[i])."""

    keys: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


class ColumnPacker:
    """Turns rows into columns; each row goes through ``check_points`` unless its keys passed it last time."""

    def __init__(self, warn_once: WarnOnce) -> None:
        self._warn_once = warn_once
        self._valid_keys: tuple[Any, ...] = ()
        self.columns = PointColumns()
        self.rejected = 0
        """Points refused by the check (bad keys, ints too large for a float) or for a clock out of range."""

    def __len__(self) -> int:
        return len(self.columns)

    def add(self, row: Row) -> int:
        """Append one row's points; returns how many were accepted."""
        step, time_s, keys, values = row
        # A loop logs the same keys every step: a row of floats under the keys that passed last time is fine.
        if keys != self._valid_keys or int in set(map(type, values)):
            given = len(keys)
            keys, values = check_points(keys, values, self._warn_once)
            if len(keys) == given:
                self._valid_keys = keys
            else:
                self.rejected += given - len(keys)
        n = len(keys)
        ts_ms = int(time_s * 1000)
        if not 0 <= ts_ms <= MAX_EPOCH_MS:  # the clock is set before 1970 or after 2299
            self._warn_once("clock", "the clock is out of the range of a point's time; points rejected", ts_ms=ts_ms)
            self.rejected += n
            return 0
        cols = self.columns
        cols.keys.extend(keys)
        cols.values.extend(values)
        cols.steps.extend([step] * n)
        cols.ts_ms.extend([ts_ms] * n)
        return n

    def take(self) -> PointColumns:
        taken, self.columns = self.columns, PointColumns()
        return taken


class BinaryPacker:
    """Turns rows into ``MetricColumns`` records of at most ``limit`` points (``MetricRecords``); each row goes
    through ``check_points`` when its keys differ from the last ones that passed, or when a value is no float
    (an int beyond a float's range)."""

    def __init__(self, warn_once: WarnOnce, limit: int) -> None:
        self._warn_once = warn_once
        self._valid_keys: tuple[Any, ...] = ()
        self._records = MetricRecords(limit)
        self.rejected = 0
        """Points refused by the check (bad keys, ints too large for a float) or for a clock out of range."""

    def __len__(self) -> int:
        return len(self._records)

    def add(self, row: Row) -> int:
        """Append one row's points; returns how many were accepted."""
        step, time_s, keys, values = row
        if keys != self._valid_keys:
            keys, values = self._checked(keys, values)
        ts_ms = int(time_s * 1000)
        if not 0 <= ts_ms <= MAX_EPOCH_MS:  # the clock is set before 1970 or after 2299
            self._warn_once("clock", "the clock is out of the range of a point's time; points rejected", ts_ms=ts_ms)
            self.rejected += len(keys)
            return 0
        try:
            packed = pack_values(values)
        except (OverflowError, struct.error):  # an int too large for a float: the check says which, once
            keys, values = self._checked(keys, values)
            packed = pack_values(values)
        self._records.add(step, ts_ms, keys, packed)
        return len(keys)

    def take(self) -> list[MetricColumnsWriter]:
        """The records packed so far (the last one maybe not full)."""
        return self._records.take()

    def _checked(self, keys: tuple[Any, ...], values: tuple[Any, ...]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        given = len(keys)
        kept_keys, kept_values = check_points(keys, values, self._warn_once)
        if len(kept_keys) == given:
            self._valid_keys = kept_keys
        else:
            self.rejected += given - len(kept_keys)
        return kept_keys, kept_values
