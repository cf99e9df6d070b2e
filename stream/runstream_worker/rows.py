"""Turning decoded events into column-wise rows for ClickHouse, one small builder per table.

Metric points are appended column by column (``list.extend``), never point by point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runstream_schemas.events import MetricBatch, RunEnd, RunStart, RunStatus

METRIC_COLUMNS = ("team", "project", "run_id", "key", "step", "ts", "value", "producer_id", "seq")
RUN_COLUMNS = (
    "team",
    "project",
    "run_id",
    "name",
    "run_group",
    "user",
    "host",
    "git_commit",
    "tags",
    "status",
    "started_at",
    "ended_at",
    "updated_at",
)
PARAM_COLUMNS = ("team", "project", "run_id", "key", "value", "updated_at")


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass
class RowBatch:
    """Rows for every table from one batch of Kafka records."""

    metrics: list[list[Any]] = field(default_factory=lambda: [[] for _ in METRIC_COLUMNS])
    runs: list[list[Any]] = field(default_factory=list)
    params: list[list[Any]] = field(default_factory=list)

    @property
    def metric_points(self) -> int:
        return len(self.metrics[0])

    def __bool__(self) -> bool:
        return bool(self.metric_points or self.runs or self.params)

    def add_metrics(self, batch: MetricBatch) -> None:
        n = len(batch.keys)
        team, project, run_id, key, step, ts, value, producer_id, seq = self.metrics
        team.extend([batch.team] * n)
        project.extend([batch.project] * n)
        run_id.extend([batch.run_id] * n)
        key.extend(batch.keys)
        step.extend(batch.steps)
        ts.extend(batch.ts_ms)  # DateTime64(3) ticks are milliseconds
        value.extend(batch.values)
        producer_id.extend([batch.producer_id] * n)
        seq.extend([batch.seq] * n)

    def add_run_start(self, event: RunStart) -> None:
        run = event.run
        started = _dt(run.started_at_ms)
        self.runs.append(self._run_row(event, RunStatus.RUNNING, None, started))
        self.params.extend(
            [run.team, run.project, run.run_id, key, value, started] for key, value in event.params.items()
        )

    def add_run_end(self, event: RunEnd) -> None:
        # The end row must outrank the start row in ReplacingMergeTree even within one millisecond.
        version = max(event.ended_at_ms, event.run.started_at_ms + 1)
        self.runs.append(self._run_row(event, event.status, _dt(event.ended_at_ms), _dt(version)))

    @staticmethod
    def _run_row(event: RunStart | RunEnd, status: RunStatus, ended: datetime | None, updated: datetime) -> list[Any]:
        run = event.run
        return [
            run.team,
            run.project,
            run.run_id,
            run.name,
            run.group,
            run.user,
            run.host,
            run.git_commit,
            dict(run.tags),
            str(status),
            _dt(run.started_at_ms),
            ended,
            updated,
        ]
