"""Live run state: which runs are alive, stalled or crashed, from their lifecycle events and heartbeats.

A run is *crashed* when rank 0's heartbeats stop for ``worker_crash_after_s`` without an end; it
is *running* again as soon as a heartbeat arrives. A run is *stalled* while heartbeats arrive but
its step has not moved for ``worker_stall_after_s``. The tracker is fed by the runs agent and read
by the liveness timer; it is seeded from ClickHouse's running runs at start, so runs that died
while no worker was up are caught too.

Every time it keeps is the worker's own clock when the sign of life arrived: a producer's clock may
be off by any amount, and only the worker's is compared with the worker's ``now``. The producer's
times only version the rows (``last_version_ms``, for the crash row). Runs are keyed by team,
project and run id together: two teams may each have a run called "baseline".
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from runstream_core.events import Event, Heartbeat, RunEnd, RunInfo, RunStart, RunUpdate
from runstream_core.log import get_logger
from runstream_worker.tables.runs import LiveFields, RunKey, run_key, version_ms

log = get_logger("runstream.liveness")


@dataclass
class RunLiveness:
    info: RunInfo
    heartbeat_at_ms: int
    """The worker's clock when the last sign of life arrived."""
    last_step: int
    step_changed_at_ms: int
    """The worker's clock when the step last moved."""
    last_version_ms: int
    """The newest version among the run's rows (the producer's clock)."""
    crashed: bool = False

    def fields(self, stall_after_ms: int) -> LiveFields:
        stalled = self.heartbeat_at_ms - self.step_changed_at_ms >= stall_after_ms
        return LiveFields(self.heartbeat_at_ms, self.last_step, stalled)


@dataclass(frozen=True)
class Crashed:
    """A run found crashed: who, its live fields, and the version its crash row must outrank."""

    info: RunInfo
    live: LiveFields
    last_version_ms: int


class LivenessTracker:
    """Thread-safe map of open runs (started, not ended) to their last signs of life."""

    def __init__(self, crash_after_s: float, stall_after_s: float) -> None:
        self._crash_after_ms = int(crash_after_s * 1000)
        self._stall_after_ms = int(stall_after_s * 1000)
        self._runs: dict[RunKey, RunLiveness] = {}
        self._ended: set[RunKey] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def observe(self, events: Iterable[Event], now_ms: int) -> dict[RunKey, LiveFields]:
        """Update from a batch's events (in order), received at ``now_ms`` on the worker's clock;
        returns the live fields of the runs they touch."""
        touched: dict[RunKey, LiveFields] = {}
        with self._lock:
            for event in events:
                if isinstance(event, (RunStart, RunUpdate, RunEnd, Heartbeat)) and event.rank == 0:
                    key = run_key(event.run)
                    state = self._apply(key, event, now_ms)
                    if state is not None:
                        touched[key] = state.fields(self._stall_after_ms)
                    elif key in touched:
                        del touched[key]
        return touched

    def _apply(self, key: RunKey, event: RunStart | RunUpdate | RunEnd | Heartbeat, now_ms: int) -> RunLiveness | None:
        if isinstance(event, RunEnd):
            self._runs.pop(key, None)
            self._ended.add(key)
            return None
        version = version_ms(event)
        if isinstance(event, RunStart):
            self._ended.discard(key)  # a resumed run is open again
            state = self._runs.get(key)
            if state is None:
                state = self._runs[key] = RunLiveness(event.run, now_ms, -1, now_ms, version)
            state.info, state.heartbeat_at_ms, state.crashed = event.run, max(state.heartbeat_at_ms, now_ms), False
            state.last_version_ms = max(state.last_version_ms, version)
            return state
        if key in self._ended:
            return None
        state = self._runs.get(key)
        if state is None:
            state = self._runs[key] = RunLiveness(event.run, now_ms, -1, now_ms, version)
        state.info = event.run
        state.last_version_ms = max(state.last_version_ms, version)
        if isinstance(event, Heartbeat):
            if state.crashed:
                log.info("run recovered: heartbeats are back", team=key[0], project=key[1], run_id=key[2])
                state.crashed = False
            state.heartbeat_at_ms = max(state.heartbeat_at_ms, now_ms)
            if event.step != state.last_step:
                state.last_step, state.step_changed_at_ms = event.step, now_ms
        return state

    def seed(
        self, info: RunInfo, heartbeat_at_ms: int | None, last_step: int, last_version_ms: int, now_ms: int
    ) -> None:
        """Add a run known from storage to be running (at worker start); events seen since win.

        Its last heartbeat is as a worker received it; a run that never sent one is given until
        ``now_ms`` plus the crash delay (its start time is the producer's clock)."""
        key = run_key(info)
        with self._lock:
            if key not in self._runs and key not in self._ended:
                beat = heartbeat_at_ms if heartbeat_at_ms is not None else now_ms
                self._runs[key] = RunLiveness(info, beat, last_step, beat, last_version_ms)

    def newly_crashed(self, now_ms: int) -> list[Crashed]:
        """Runs whose heartbeats stopped ``crash_after_s`` ago, each reported once until it recovers."""
        crashed = []
        with self._lock:
            for state in self._runs.values():
                if not state.crashed and now_ms - state.heartbeat_at_ms >= self._crash_after_ms:
                    state.crashed = True
                    live = LiveFields(state.heartbeat_at_ms, state.last_step, stalled=False)
                    crashed.append(Crashed(state.info, live, state.last_version_ms))
        return crashed
