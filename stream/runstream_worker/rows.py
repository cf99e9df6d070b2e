"""Turning decoded events into rows for every table: ``to_rows``, a pure step.

``RowBatch`` holds one batch's rows per table; each ``add_*`` hands an event to the mapping of the
tables it feeds (``runstream_worker.tables``). Point tables stay column-wise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runstream_core.events import Event, HardwareBatch, Heartbeat, MetricBatch, RunEnd, RunStart, RunUpdate
from runstream_worker.tables import hardware, metrics, params, runs, summary
from runstream_worker.tables.runs import NO_LIVE_FIELDS, LiveFields


@dataclass
class RowBatch:
    """Rows for every table from one batch of Kafka records (``health``: from the worker itself)."""

    metrics: list[list[Any]] = field(default_factory=metrics.columns)
    hardware: list[list[Any]] = field(default_factory=hardware.columns)
    runs: list[list[Any]] = field(default_factory=list)
    params: list[list[Any]] = field(default_factory=list)
    summary: list[list[Any]] = field(default_factory=list)
    health: list[list[Any]] = field(default_factory=list)
    heartbeats: int = 0
    live: Mapping[str, LiveFields] = field(default_factory=dict)
    """Liveness of runs in this batch, from the worker's tracker (absent: nothing known)."""

    @property
    def metric_points(self) -> int:
        return len(self.metrics[0])

    @property
    def hardware_readings(self) -> int:
        return len(self.hardware[0])

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {
            "metrics": self.metric_points,
            "hardware": self.hardware_readings,
            "runs": len(self.runs),
            "params": len(self.params),
            "summary": len(self.summary),
            "pipeline_health": len(self.health),
        }

    def __bool__(self) -> bool:
        return bool(
            self.metric_points or self.hardware_readings or self.runs or self.params or self.summary or self.health
        )

    def add_metrics(self, batch: MetricBatch) -> None:
        metrics.extend(self.metrics, batch)

    def add_hardware(self, batch: HardwareBatch) -> None:
        hardware.extend(self.hardware, batch)

    def add_run_start(self, event: RunStart) -> None:
        self.runs.append(runs.started(event, self.live.get(event.run.run_id, NO_LIVE_FIELDS)))
        self.params.extend(params.rows(event.run, event.params, runs.version(event)))

    def add_run_update(self, event: RunUpdate) -> None:
        self.runs.append(runs.updated(event, self.live.get(event.run.run_id, NO_LIVE_FIELDS)))
        version = runs.version(event)
        self.params.extend(params.rows(event.run, event.params, version))
        self.summary.extend(summary.rows(event.run, event.summary, version))

    def add_run_end(self, event: RunEnd) -> None:
        self.runs.append(runs.ended(event, self.live.get(event.run.run_id, NO_LIVE_FIELDS)))

    def add_heartbeat(self, event: Heartbeat) -> None:
        self.heartbeats += 1
        row = runs.heartbeat(event, self.live.get(event.run.run_id))
        if row is not None:
            self.runs.append(row)

    def add(self, event: Event) -> None:
        """Add any event to the tables it feeds."""
        if isinstance(event, MetricBatch):
            self.add_metrics(event)
        elif isinstance(event, HardwareBatch):
            self.add_hardware(event)
        elif isinstance(event, RunStart):
            self.add_run_start(event)
        elif isinstance(event, RunUpdate):
            self.add_run_update(event)
        elif isinstance(event, RunEnd):
            self.add_run_end(event)
        else:
            self.add_heartbeat(event)


def to_rows(events: Iterable[Event], live: Mapping[str, LiveFields] | None = None) -> RowBatch:
    """The rows ``events`` (in offset order) write, with the runs' ``live`` fields where known."""
    rows = RowBatch(live=live if live is not None else {})
    for event in events:
        rows.add(event)
    return rows
