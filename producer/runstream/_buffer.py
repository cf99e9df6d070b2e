"""Column-wise buffer of metric points, filled by ``Run.log`` and drained by the sender thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class PointColumns:
    """Parallel columns of points: point ``i`` is (keys[i], steps[i], ts_ms[i], values[i])."""

    keys: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def slice(self, start: int, stop: int) -> PointColumns:
        return PointColumns(
            self.keys[start:stop], self.steps[start:stop], self.ts_ms[start:stop], self.values[start:stop]
        )


class PointBuffer:
    """Thread-safe append/swap buffer with a hard bound; points over the bound are counted as dropped."""

    def __init__(self, max_points: int) -> None:
        self._max_points = max_points
        self._lock = threading.Lock()
        self._columns = PointColumns()
        self.dropped = 0

    def append(self, keys: list[str], step: int, ts_ms: int, values: list[float]) -> int:
        """Append points sharing one step and time; returns how many were dropped for lack of room."""
        n = len(keys)
        with self._lock:
            room = self._max_points - len(self._columns)
            if room < n:
                keys, values = keys[: max(room, 0)], values[: max(room, 0)]
                self.dropped += n - len(keys)
            cols = self._columns
            cols.keys.extend(keys)
            cols.steps.extend([step] * len(keys))
            cols.ts_ms.extend([ts_ms] * len(keys))
            cols.values.extend(values)
            return n - len(keys)

    def swap(self) -> PointColumns:
        """Take everything buffered so far, leaving an empty buffer."""
        with self._lock:
            taken, self._columns = self._columns, PointColumns()
        return taken

    def __len__(self) -> int:
        return len(self._columns)
