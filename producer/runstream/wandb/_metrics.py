"""``define_metric`` and the run summary W&B keeps for every logged metric."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from runstream._flatten import flatten

AGGREGATES = frozenset({"min", "max", "mean", "first", "last", "best", "none"})
"""What ``define_metric(summary=...)`` may ask for (several, comma-separated: ``"min,max"``)."""


@dataclass(frozen=True)
class MetricDefinition:
    """One ``define_metric`` call: ``name`` may end in a glob (``"val/*"``)."""

    name: str
    step_metric: str | None = None
    summary: frozenset[str] = frozenset()
    goal: str | None = None
    step_sync: bool = True
    hidden: bool = False

    @property
    def is_glob(self) -> bool:
        return any(c in self.name for c in "*?[")


def parse_summary(summary: str | None) -> frozenset[str]:
    if summary is None:
        return frozenset()
    wanted = frozenset(part.strip().lower() for part in summary.split(",") if part.strip())
    unknown = sorted(wanted - AGGREGATES)
    if unknown:
        raise ValueError(f"summary must be among {sorted(AGGREGATES)}, got {unknown}")
    return wanted


@dataclass
class _Track:
    first: float
    last: float
    low: float
    high: float
    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        self.last = value
        if not math.isnan(value):
            self.low = min(self.low, value)
            self.high = max(self.high, value)
        self.total += value
        self.count += 1


@dataclass
class Definitions:
    """The ``define_metric`` calls of a run; exact names win over globs, a later glob over an earlier one."""

    exact: dict[str, MetricDefinition] = field(default_factory=dict)
    globs: list[MetricDefinition] = field(default_factory=list)
    step_metrics: bool = False
    """Whether any definition names a ``step_metric`` (if none, ``log()`` skips the step-sync pass)."""
    aggregates: bool = False
    """Whether any definition asks for more than the last value (if none, only last values are kept)."""
    _found: dict[str, MetricDefinition | None] = field(default_factory=dict)

    def add(self, definition: MetricDefinition) -> None:
        if definition.is_glob:
            self.globs = [d for d in self.globs if d.name != definition.name] + [definition]
        else:
            self.exact[definition.name] = definition
        self.step_metrics = self.step_metrics or definition.step_metric is not None
        self.aggregates = self.aggregates or bool(definition.summary - {"last", "none"})
        self._found.clear()

    def find(self, key: str) -> MetricDefinition | None:
        """The definition for ``key``, looked up once per key until the next ``add``."""
        try:
            return self._found[key]
        except KeyError:
            pass
        found = self.exact.get(key)
        if found is None:
            found = next((d for d in reversed(self.globs) if fnmatch.fnmatchcase(key, d.name)), None)
        self._found[key] = found
        return found


class WandbSummary(MutableMapping[str, Any]):
    """``run.summary``: by default each metric's last value (or the aggregates ``define_metric`` asked
    for, e.g. ``{"min": 0.12}``); values set explicitly override them and are stored at once, the
    automatic ones when the run finishes."""

    def __init__(self, definitions: Definitions, store: MutableMapping[str, Any] | None) -> None:
        self._definitions = definitions
        self._store = store
        self._last: dict[str, float] = {}
        self._tracks: dict[str, _Track] = {}
        """Running aggregates of the metrics ``define_metric`` asked them for (from then on)."""
        self._explicit: dict[str, Any] = {}

    # -- fed by log() ----------------------------------------------------------------------
    def observe(self, step: Mapping[Any, Any]) -> None:
        """Take one committed step's values: the last value of each metric, and the aggregates asked for."""
        for key, value in step.items():
            if not isinstance(key, str):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                continue
            self._last[key] = number
            if self._definitions.aggregates:
                definition = self._definitions.find(key)
                if definition is not None and definition.summary - {"last", "none"}:
                    track = self._tracks.get(key)
                    if track is None:
                        self._tracks[key] = track = _Track(first=number, last=number, low=math.inf, high=-math.inf)
                    track.add(number)

    def last(self, key: str) -> float | None:
        """The last value logged for ``key``, or None."""
        return self._last.get(key)

    def automatic(self, key: str) -> Any:
        definition = self._definitions.find(key)
        wanted = definition.summary if definition is not None and definition.summary else frozenset({"last"})
        if "none" in wanted:
            return None
        track = self._tracks.get(key)
        if wanted == {"last"} or track is None:
            return self._last[key]
        goal = definition.goal if definition is not None else None
        values = {
            "min": track.low,
            "max": track.high,
            "mean": track.total / track.count,
            "first": track.first,
            "last": track.last,
            "best": track.high if goal == "maximize" else track.low,
        }
        return {name: values[name] for name in sorted(wanted)}

    def pending(self) -> dict[str, Any]:
        """The automatic values not overridden, flattened as stored (``loss.min``)."""
        values = {k: self.automatic(k) for k in self._last if k not in self._explicit}
        return {k: v for k, v in flatten({k: v for k, v in values.items() if v is not None}, ".")}

    # -- the mapping -----------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self._explicit:
            return self._explicit[key]
        if key in self._last:
            value = self.automatic(key)
            if value is not None:
                return value
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        found = key in self._explicit or key in self._last
        self._explicit.pop(key, None)
        self._last.pop(key, None)
        self._tracks.pop(key, None)
        if not found:
            raise KeyError(key)

    def _keys(self) -> list[str]:
        """Metrics with a summary (``summary="none"`` has none), then the keys set explicitly."""
        shown = [k for k in self._last if k in self._explicit or self.automatic(k) is not None]
        return list(dict.fromkeys([*shown, *self._explicit]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        values = dict(other, **kwargs)
        self._explicit.update(values)
        if self._store is not None:
            self._store.update(dict(flatten(values, ".")))

    def __repr__(self) -> str:
        return f"Summary({dict(self)!r})"
