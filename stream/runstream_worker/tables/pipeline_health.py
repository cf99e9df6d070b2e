"""``pipeline_health``: one row per worker per interval, its figures counted over that interval."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

COLUMNS = (
    "ts",
    "worker",
    "interval_s",
    "records",
    "points",
    "hardware_readings",
    "dead_letters",
    "replays",
    "batches",
    "crashed_runs",
    "consumer_lag",
    "batch_p50_ms",
    "batch_max_ms",
)


@dataclass(frozen=True)
class Interval:
    """What one worker did in one interval."""

    seconds: float
    records: int = 0
    points: int = 0
    hardware_readings: int = 0
    dead_letters: int = 0
    replays: int = 0
    crashed_runs: int = 0
    batch_ms: tuple[float, ...] = ()
    """How long each batch of the interval took; their count is the interval's batches."""


def row(worker: str, interval: Interval, lag: int, now_ms: int) -> list[Any]:
    """The interval's row, in the order of ``COLUMNS``; ``lag`` is the consumer lag at its end."""
    ms = interval.batch_ms
    return [
        now_ms,
        worker,
        round(interval.seconds, 3),
        interval.records,
        interval.points,
        interval.hardware_readings,
        interval.dead_letters,
        interval.replays,
        len(ms),
        interval.crashed_runs,
        lag,
        statistics.median(ms) if ms else 0.0,
        max(ms) if ms else 0.0,
    ]
