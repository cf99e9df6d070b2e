"""Turning decoded events into column-wise rows for ClickHouse, one small builder per table.

Metric points are appended column by column (``list.extend``), never point by point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runstream_core.events import (
    HardwareBatch,
    Heartbeat,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    RunUpdate,
)

METRIC_COLUMNS = ("team", "project", "run_id", "key", "step", "ts", "value", "producer_id", "seq", "rank")
HARDWARE_COLUMNS = (
    "team",
    "project",
    "run_id",
    "host",
    "rank",
    "key",
    "device",
    "ts",
    "value",
    "interval_ms",
    "producer_id",
    "seq",
    "user",
)
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
    "world_size",
    "stalled",
    "heartbeat_at",
    "last_step",
)
PARAM_COLUMNS = ("team", "project", "run_id", "key", "value", "updated_at")
SUMMARY_COLUMNS = ("team", "project", "run_id", "key", "value", "text", "updated_at")


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class LiveFields:
    """What the worker knows of a run's liveness when it writes a row for it."""

    heartbeat_at_ms: int | None = None
    last_step: int = -1
    stalled: bool = False


NO_LIVE_FIELDS = LiveFields()


@dataclass
class RowBatch:
    """Rows for every table from one batch of Kafka records."""

    metrics: list[list[Any]] = field(default_factory=lambda: [[] for _ in METRIC_COLUMNS])
    hardware: list[list[Any]] = field(default_factory=lambda: [[] for _ in HARDWARE_COLUMNS])
    runs: list[list[Any]] = field(default_factory=list)
    params: list[list[Any]] = field(default_factory=list)
    summary: list[list[Any]] = field(default_factory=list)
    health: list[list[Any]] = field(default_factory=list)
    heartbeats: int = 0
    live: dict[str, LiveFields] = field(default_factory=dict)
    """Liveness of runs in this batch, from the worker's tracker (absent: nothing known)."""

    @property
    def metric_points(self) -> int:
        return len(self.metrics[0])

    @property
    def hardware_readings(self) -> int:
        return len(self.hardware[0])

    def __bool__(self) -> bool:
        return bool(
            self.metric_points or self.hardware_readings or self.runs or self.params or self.summary or self.health
        )

    def add_metrics(self, batch: MetricBatch) -> None:
        n = len(batch.keys)
        team, project, run_id, key, step, ts, value, producer_id, seq, rank = self.metrics
        team.extend([batch.team] * n)
        project.extend([batch.project] * n)
        run_id.extend([batch.run_id] * n)
        key.extend(batch.keys)
        step.extend(batch.steps)
        ts.extend(batch.ts_ms)  # DateTime64(3) ticks are milliseconds
        value.extend(batch.values)
        producer_id.extend([batch.producer_id] * n)
        seq.extend([batch.seq] * n)
        rank.extend([batch.rank] * n)

    def add_hardware(self, batch: HardwareBatch) -> None:
        n = len(batch.keys)
        team, project, run_id, host, rank, key, device, ts, value, interval_ms, producer_id, seq, user = self.hardware
        team.extend([batch.team] * n)
        project.extend([batch.project] * n)
        run_id.extend([batch.run_id] * n)
        host.extend([batch.host] * n)
        rank.extend([batch.rank] * n)
        key.extend(batch.keys)
        device.extend(batch.devices)
        ts.extend(batch.ts_ms)
        value.extend(batch.values)
        interval_ms.extend([batch.interval_ms] * n)
        producer_id.extend([batch.producer_id] * n)
        seq.extend([batch.seq] * n)
        user.extend([batch.user] * n)

    def add_run_start(self, event: RunStart) -> None:
        run = event.run
        version = _dt(max(run.started_at_ms, event.resumed_at_ms))
        self.runs.append(self.run_row(run, RunStatus.RUNNING, None, version))
        self.params.extend(
            [run.team, run.project, run.run_id, key, value, version] for key, value in event.params.items()
        )

    def add_run_update(self, event: RunUpdate) -> None:
        run = event.run
        updated = _dt(max(event.ts_ms, run.started_at_ms))
        self.runs.append(self.run_row(run, RunStatus.RUNNING, None, updated))
        self.params.extend([run.team, run.project, run.run_id, k, v, updated] for k, v in event.params.items())
        for key, value in event.summary.items():
            number, text = (None, value) if isinstance(value, str) else (value, "")
            self.summary.append([run.team, run.project, run.run_id, key, number, text, updated])

    def add_run_end(self, event: RunEnd) -> None:
        # The end row must outrank the start row in ReplacingMergeTree even within one millisecond.
        version = max(event.ended_at_ms, event.run.started_at_ms + 1)
        live = self.live.get(event.run.run_id, NO_LIVE_FIELDS)
        final = LiveFields(live.heartbeat_at_ms, max(event.step, live.last_step), stalled=False)
        self.runs.append(self.run_row(event.run, event.status, _dt(event.ended_at_ms), _dt(version), final))

    def add_heartbeat(self, event: Heartbeat) -> None:
        """Rank 0's heartbeats keep the run's live state (last beat, last step, stalled flag) current."""
        self.heartbeats += 1
        if event.rank != 0:
            return
        run = event.run
        live = self.live.get(run.run_id, LiveFields(event.ts_ms, event.step))
        version = _dt(max(event.ts_ms, run.started_at_ms))
        self.runs.append(self.run_row(run, RunStatus.RUNNING, None, version, live))

    def run_row(
        self,
        run: RunInfo,
        status: RunStatus,
        ended: datetime | None,
        updated: datetime,
        live: LiveFields | None = None,
    ) -> list[Any]:
        live = live or self.live.get(run.run_id, NO_LIVE_FIELDS)
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
            run.world_size,
            int(live.stalled),
            _dt(live.heartbeat_at_ms) if live.heartbeat_at_ms is not None else None,
            live.last_step,
        ]
