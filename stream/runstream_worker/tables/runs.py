"""``runs``: one row per lifecycle event (ReplacingMergeTree on ``updated_at``), and back.

Every lifecycle event carries the run's whole identity (``RunInfo``), so each one alone rebuilds
the run's row; the newest version wins. Versions are the producer's times (its clock orders its own
events); the crash row the worker writes is versioned just after the last row it saw of the run, so
it outranks that row and never a later end. The worker's liveness figures (last heartbeat as the
worker received it, last step, stalled) ride along on each row. ``RUNNING_QUERY`` and
``running_run`` are the way back: the runs stored as running, which seed the worker's liveness
tracker at start. A run is named by its team, project and id together (``RunKey``).
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

RunKey = tuple[str, str, str]
"""(team, project, run id): run ids are unique within a project only."""


def run_key(run: RunInfo) -> RunKey:
    return (run.team, run.project, run.run_id)


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


def version_ms(event: LifecycleEvent) -> int:
    """The version (``updated_at``, epoch ms) of the rows an event writes: run row, params, summary."""
    run = event.run
    if isinstance(event, RunStart):
        return max(run.started_at_ms, event.resumed_at_ms)
    if isinstance(event, RunEnd):
        # The end row outranks every row of the run from before the end, even one written within
        # the same millisecond (the start, a last heartbeat, or the crash row that follows it).
        return max(event.ended_at_ms, run.started_at_ms) + 1
    return max(event.ts_ms, run.started_at_ms)


def version(event: LifecycleEvent) -> datetime:
    """``version_ms`` as the ``DateTime64(3)`` value stored."""
    return at_ms(version_ms(event))


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


def crashed(run: RunInfo, live: LiveFields, last_version_ms: int) -> list[Any]:
    """The row that marks a run whose heartbeats stopped as crashed.

    Versioned 1 ms after ``last_version_ms``, the newest version among the run's rows the worker
    saw, on the producer's clock: it outranks them, and a later end or heartbeat outranks it (an end
    at the same millisecond wins too: it is written later, and its status sorts after "crashed")."""
    return row(run, RunStatus.CRASHED, None, at_ms(last_version_ms + 1), live)


class RunningRun(NamedTuple):
    """A run stored as running: its identity, its last heartbeat as a worker received it (None
    before any), its last step, and the version of its newest row (producer's clock)."""

    info: RunInfo
    heartbeat_at_ms: int | None
    last_step: int
    version_ms: int


RUNNING_QUERY = """
SELECT team, project, run_id, name, run_group, user, host, git_commit, tags,
       toUnixTimestamp64Milli(started_at), world_size,
       toUnixTimestamp64Milli(heartbeat_at), last_step, toUnixTimestamp64Milli(updated_at)
FROM runs FINAL
WHERE status = 'running'
"""


def running_run(values: Sequence[Any]) -> RunningRun:
    """One result row of ``RUNNING_QUERY``, mapped back onto the run it was written from."""
    (
        team,
        project,
        run_id,
        name,
        group,
        user,
        host,
        commit,
        tags,
        started_ms,
        world_size,
        beat_ms,
        last_step,
        version,
    ) = values
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
    return RunningRun(info, None if beat_ms is None else int(beat_ms), int(last_step), int(version))
