"""Packing of logged rows into column-wise metric records, with the checks ``log()`` leaves out.

``Run.log`` appends ``(step, time_s, keys, values)`` rows to a deque and returns; the sender thread
takes them here, checks keys and integer ranges, and builds the columns of ``MetricBatch`` records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runstream_core.events import MAX_KEY_LEN, control_character

Row = tuple[int, float, tuple[Any, ...], tuple[Any, ...]]
"""(step, time.time(), keys, values) as appended by ``Run.log``."""

# MessagePack carries integers in [-2**63, 2**64); larger ones travel as floats.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

Warn = Callable[..., None]


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
    """Turns rows into columns; a point with a bad key or value is rejected with one warning per kind."""

    def __init__(self, warn_once: Warn) -> None:
        self._warn_once = warn_once
        self._valid_keys: tuple[Any, ...] = ()
        self.columns = PointColumns()
        self.rejected = 0

    def add(self, row: Row) -> int:
        """Append one row's points; returns how many were accepted."""
        step, time_s, keys, values = row
        if keys != self._valid_keys:  # a loop logs the same keys every step: check them once
            if not self._keys_ok(keys):
                keys, values = self._filter_keys(keys, values)
            else:
                self._valid_keys = keys
        if int in set(map(type, values)):
            keys, values = self._fit_ints(keys, values)
        n = len(keys)
        cols = self.columns
        cols.keys.extend(keys)
        cols.values.extend(values)
        cols.steps.extend([step] * n)
        cols.ts_ms.extend([int(time_s * 1000)] * n)
        return n

    def take(self) -> PointColumns:
        taken, self.columns = self.columns, PointColumns()
        return taken

    @staticmethod
    def _keys_ok(keys: tuple[Any, ...]) -> bool:
        return all(type(k) is str and 0 < len(k) <= MAX_KEY_LEN for k in keys) and (
            control_character("".join(keys)) is None
        )

    def _filter_keys(self, keys: tuple[Any, ...], values: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        kept_keys, kept_values = [], []
        for key, value in zip(keys, values, strict=True):
            if type(key) is not str:
                self.rejected += 1
                self._warn_once("key-type", "metric keys must be strings; point dropped", key=repr(key)[:64])
            elif not 0 < len(key) <= MAX_KEY_LEN:
                self.rejected += 1
                self._warn_once(
                    "key-length", "metric key empty or too long; point dropped", key=key[:64], limit=MAX_KEY_LEN
                )
            elif (char := control_character(key)) is not None:
                self.rejected += 1
                self._warn_once(
                    f"key-control:{key}",
                    "metric key holds a control character; point dropped",
                    key=repr(key)[:64],
                    character=f"U+{ord(char):04X}",
                )
            else:
                kept_keys.append(key)
                kept_values.append(value)
        return tuple(kept_keys), tuple(kept_values)

    def _fit_ints(self, keys: tuple[Any, ...], values: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        kept_keys, kept_values = [], []
        for key, value in zip(keys, values, strict=True):
            fitted = value
            if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
                try:
                    fitted = float(value)
                except OverflowError:
                    self.rejected += 1
                    self._warn_once(
                        f"value-overflow:{key}", "metric value too large for a float; point dropped", key=key
                    )
                    continue
            kept_keys.append(key)
            kept_values.append(fitted)
        return tuple(kept_keys), tuple(kept_values)
