"""Turning decoded events into rows for every table: ``to_rows`` and ``build_rows``, pure steps.

``RowBatch`` holds one batch's rows per table; each ``add_*`` hands an event to the mapping of the
tables it feeds (``runstream_worker.tables``). Point tables are numpy columns (``PointColumns``).
``build_rows`` adds each event whole or not at all: an event whose rows cannot be built is left out
and named, with the exception, so that it can be set aside while the rest is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runstream_core.events import (
    Event,
    HardwareBatch,
    HardwareColumns,
    Heartbeat,
    MetricBatch,
    MetricColumns,
    RunAlert,
    RunEnd,
    RunStart,
    RunUpdate,
)
from runstream_worker.columns import hardware_arrays, metric_arrays
from runstream_worker.tables import hardware, metrics, params, runs, summary
from runstream_worker.tables._points import PointColumns
from runstream_worker.tables.runs import NO_LIVE_FIELDS, LiveFields, RunKey, run_key


@dataclass
class RowBatch:
    """Rows for every table from one batch of Kafka records (``health``: from the worker itself)."""

    metrics: PointColumns = field(default_factory=metrics.columns)
    hardware: PointColumns = field(default_factory=hardware.columns)
    runs: list[list[Any]] = field(default_factory=list)
    params: list[list[Any]] = field(default_factory=list)
    summary: list[list[Any]] = field(default_factory=list)
    health: list[list[Any]] = field(default_factory=list)
    alerts: list[list[Any]] = field(default_factory=list)
    alert_state: list[list[Any]] = field(default_factory=list)
    """``alerts`` and ``alert_state``: from the worker's alert evaluation, written before the take's rows."""
    heartbeats: int = 0
    live: Mapping[RunKey, LiveFields] = field(default_factory=dict)
    """Liveness of runs in this batch, from the worker's tracker (absent: nothing known)."""

    @property
    def metric_points(self) -> int:
        return len(self.metrics)

    @property
    def hardware_readings(self) -> int:
        return len(self.hardware)

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
            self.metric_points
            or self.hardware_readings
            or self.runs
            or self.params
            or self.summary
            or self.health
            or self.alerts
            or self.alert_state
        )

    def add_metrics(self, batch: MetricBatch) -> None:
        metrics.extend(self.metrics, batch)

    def add_hardware(self, batch: HardwareBatch) -> None:
        hardware.extend(self.hardware, batch)

    def add_metric_columns(self, record: MetricColumns) -> None:
        """A wire format v2 batch; its bounds were checked when it was decoded."""
        metrics.extend_arrays(self.metrics, record, metric_arrays(record, check=False))

    def add_hardware_columns(self, record: HardwareColumns) -> None:
        """A wire format v2 batch; its bounds were checked when it was decoded."""
        hardware.extend_arrays(self.hardware, record, hardware_arrays(record, check=False))

    def add_run_start(self, event: RunStart) -> None:
        self.runs.append(runs.started(event, self.live.get(run_key(event.run), NO_LIVE_FIELDS)))
        self.params.extend(params.rows(event.run, event.params, runs.version(event)))

    def add_run_update(self, event: RunUpdate) -> None:
        self.runs.append(runs.updated(event, self.live.get(run_key(event.run), NO_LIVE_FIELDS)))
        version = runs.version(event)
        self.params.extend(params.rows(event.run, event.params, version))
        self.summary.extend(summary.rows(event.run, event.summary, version))

    def add_run_end(self, event: RunEnd) -> None:
        self.runs.append(runs.ended(event, self.live.get(run_key(event.run), NO_LIVE_FIELDS)))

    def add_heartbeat(self, event: Heartbeat) -> None:
        self.heartbeats += 1
        row = runs.heartbeat(event, self.live.get(run_key(event.run)))
        if row is not None:
            self.runs.append(row)

    def add(self, event: Event) -> None:
        """Add any event to the tables it feeds."""
        if isinstance(event, MetricColumns):
            self.add_metric_columns(event)
        elif isinstance(event, HardwareColumns):
            self.add_hardware_columns(event)
        elif isinstance(event, MetricBatch):
            self.add_metrics(event)
        elif isinstance(event, HardwareBatch):
            self.add_hardware(event)
        elif isinstance(event, RunStart):
            self.add_run_start(event)
        elif isinstance(event, RunUpdate):
            self.add_run_update(event)
        elif isinstance(event, RunEnd):
            self.add_run_end(event)
        elif isinstance(event, RunAlert):
            pass  # stored in `alerts` by the worker's alert evaluation
        else:
            self.add_heartbeat(event)

    def add_whole(self, event: Event) -> None:
        """``add``, or, if it raises, leave every table as it was and let the exception through."""
        points, readings = self.metrics.mark(), self.hardware.mark()
        sizes = (len(self.runs), len(self.params), len(self.summary), self.heartbeats)
        try:
            self.add(event)
        except Exception:
            self.metrics.cut(points)
            self.hardware.cut(readings)
            del self.runs[sizes[0] :], self.params[sizes[1] :], self.summary[sizes[2] :]
            self.heartbeats = sizes[3]
            raise


def to_rows(events: Iterable[Event], live: Mapping[RunKey, LiveFields] | None = None) -> RowBatch:
    """The rows ``events`` (in offset order) write, with the runs' ``live`` fields where known."""
    rows = RowBatch(live=live if live is not None else {})
    for event in events:
        rows.add(event)
    return rows


def build_rows(
    events: Sequence[Event], live: Mapping[RunKey, LiveFields] | None = None
) -> tuple[RowBatch, list[tuple[int, Exception]]]:
    """``to_rows`` that never raises: the rows of every event that maps, and (index, exception) of
    those that do not (a deterministic failure: the same event would fail again)."""
    rows = RowBatch(live=live if live is not None else {})
    failed: list[tuple[int, Exception]] = []
    for index, event in enumerate(events):
        try:
            rows.add_whole(event)
        except Exception as exc:
            failed.append((index, exc))
    return rows, failed
