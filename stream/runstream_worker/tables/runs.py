"""``runs``: one row per lifecycle event (ReplacingMergeTree on ``updated_at``), and back.

Every lifecycle event carries the run's whole identity (``RunInfo``), so each one alone rebuilds
the run's row; the newest version wins. The worker's liveness figures (last heartbeat, last step,
stalled) ride along on each row. ``RUNNING_QUERY`` and ``running_run`` are the way back: the runs
stored as running, which seed the worker's liveness tracker at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from runstream_core.events import Heartbeat, RunEnd, RunInfo, RunStart, RunStatus, RunUpdate
from runstream_worker.tables._time import at_ms

COLUMNS = (
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

LifecycleEvent = RunStart | RunUpdate | RunEnd | Heartbeat


@dataclass(frozen=True)
class LiveFields:
    """What the worker knows of a run's liveness when it writes a row for it."""

    heartbeat_at_ms: int | None = None
    last_step: int = -1
    stalled: bool = False


NO_LIVE_FIELDS = LiveFields()


def row(run: RunInfo, status: RunStatus, ended: datetime | None, version: datetime, live: LiveFields) -> list[Any]:
    """The run's row, in the order of ``COLUMNS``."""
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
        at_ms(run.started_at_ms),
        ended,
        version,
        run.world_size,
        int(live.stalled),
        at_ms(live.heartbeat_at_ms) if live.heartbeat_at_ms is not None else None,
        live.last_step,
    ]


def version(event: LifecycleEvent) -> datetime:
    """The version (``updated_at``) of the rows an event writes: its run row, params and summary."""
    run = event.run
    if isinstance(event, RunStart):
        return at_ms(max(run.started_at_ms, event.resumed_at_ms))
    if isinstance(event, RunEnd):
        # The end row must outrank the start row in ReplacingMergeTree even within one millisecond.
        return at_ms(max(event.ended_at_ms, run.started_at_ms + 1))
    return at_ms(max(event.ts_ms, run.started_at_ms))


def started(event: RunStart, live: LiveFields) -> list[Any]:
    return row(event.run, RunStatus.RUNNING, None, version(event), live)


def updated(event: RunUpdate, live: LiveFields) -> list[Any]:
    return row(event.run, RunStatus.RUNNING, None, version(event), live)


def ended(event: RunEnd, live: LiveFields) -> list[Any]:
    """The final row: the event's status and end time; the last step is the later of the event's and
    the tracker's, and an ended run is never stalled."""
    final = LiveFields(live.heartbeat_at_ms, max(event.step, live.last_step), stalled=False)
    return row(event.run, event.status, at_ms(event.ended_at_ms), version(event), final)


def heartbeat(event: Heartbeat, live: LiveFields | None) -> list[Any] | None:
    """Rank 0's heartbeats keep the run's live state current; other ranks' write nothing.

    Without the tracker's view (``live`` None) the heartbeat itself is the last sign of life."""
    if event.rank != 0:
        return None
    live = live if live is not None else LiveFields(event.ts_ms, event.step)
    return row(event.run, RunStatus.RUNNING, None, version(event), live)


def crashed(run: RunInfo, live: LiveFields, now_ms: int) -> list[Any]:
    """The row that marks a run whose heartbeats stopped as crashed, versioned ``now_ms``."""
    return row(run, RunStatus.CRASHED, None, at_ms(now_ms), live)


class RunningRun(NamedTuple):
    """A run stored as running: its identity, its last sign of life and its last step."""

    info: RunInfo
    heartbeat_at_ms: int
    last_step: int


RUNNING_QUERY = """
SELECT team, project, run_id, name, run_group, user, host, git_commit, tags,
       toUnixTimestamp64Milli(started_at), world_size,
       toUnixTimestamp64Milli(coalesce(heartbeat_at, updated_at)), last_step
FROM runs FINAL
WHERE status = 'running'
"""


def running_run(values: Sequence[Any]) -> RunningRun:
    """One result row of ``RUNNING_QUERY``, mapped back onto the run it was written from."""
    team, project, run_id, name, group, user, host, commit, tags, started_ms, world_size, beat_ms, last_step = values
    info = RunInfo(
        run_id=run_id,
        team=team,
        project=project,
        name=name,
        group=group,
        user=user,
        host=host,
        git_commit=commit,
        tags=dict(tags),
        started_at_ms=int(started_ms),
        world_size=int(world_size),
    )
    return RunningRun(info, int(beat_ms), int(last_step))
