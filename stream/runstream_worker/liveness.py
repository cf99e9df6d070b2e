"""Live run state: which runs are alive, stalled or crashed, from their lifecycle events and heartbeats.

A run is *crashed* when rank 0's heartbeats stop for ``worker_crash_after_s`` without an end; it
is *running* again as soon as a heartbeat arrives. A run is *stalled* while heartbeats arrive but
its step has not moved for ``worker_stall_after_s``. The tracker is fed by the runs agent and read
by the liveness timer; it is seeded from ClickHouse's running runs at start, so runs that died
while no worker was up are caught too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from runstream_core.events import Event, Heartbeat, RunEnd, RunInfo, RunStart, RunUpdate
from runstream_core.log import get_logger
from runstream_worker.tables.runs import LiveFields

log = get_logger("runstream.liveness")


@dataclass
class RunLiveness:
    info: RunInfo
    heartbeat_at_ms: int
    last_step: int
    step_changed_at_ms: int
    crashed: bool = False

    def fields(self, stall_after_ms: int) -> LiveFields:
        stalled = self.heartbeat_at_ms - self.step_changed_at_ms >= stall_after_ms
        return LiveFields(self.heartbeat_at_ms, self.last_step, stalled)


class LivenessTracker:
    """Thread-safe map of open runs (started, not ended) to their last signs of life."""

    def __init__(self, crash_after_s: float, stall_after_s: float) -> None:
        self._crash_after_ms = int(crash_after_s * 1000)
        self._stall_after_ms = int(stall_after_s * 1000)
        self._runs: dict[str, RunLiveness] = {}
        self._ended: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def observe(self, events: Iterable[Event]) -> dict[str, LiveFields]:
        """Update from a batch's events (in order); returns the live fields of the runs they touch."""
        touched: dict[str, LiveFields] = {}
        with self._lock:
            for event in events:
                if isinstance(event, (RunStart, RunUpdate, RunEnd, Heartbeat)) and event.rank == 0:
                    state = self._apply(event)
                    run_id = event.run.run_id
                    if state is not None:
                        touched[run_id] = state.fields(self._stall_after_ms)
                    elif run_id in touched:
                        del touched[run_id]
        return touched

    def _apply(self, event: RunStart | RunUpdate | RunEnd | Heartbeat) -> RunLiveness | None:
        run_id = event.run.run_id
        if isinstance(event, RunEnd):
            self._runs.pop(run_id, None)
            self._ended.add(run_id)
            return None
        if isinstance(event, RunStart):
            self._ended.discard(run_id)  # a resumed run is open again
            at = max(event.run.started_at_ms, event.resumed_at_ms)
            state = self._runs.get(run_id)
            if state is None:
                state = self._runs[run_id] = RunLiveness(event.run, at, -1, at)
            state.info, state.heartbeat_at_ms, state.crashed = event.run, max(state.heartbeat_at_ms, at), False
            return state
        if run_id in self._ended:
            return None
        state = self._runs.get(run_id)
        at = event.ts_ms
        if state is None:
            state = self._runs[run_id] = RunLiveness(event.run, at, -1, at)
        state.info = event.run
        if isinstance(event, Heartbeat):
            if state.crashed:
                log.info("run recovered: heartbeats are back", run_id=run_id)
                state.crashed = False
            state.heartbeat_at_ms = max(state.heartbeat_at_ms, at)
            if event.step != state.last_step:
                state.last_step, state.step_changed_at_ms = event.step, at
        return state

    def seed(self, info: RunInfo, heartbeat_at_ms: int, last_step: int) -> None:
        """Add a run known from storage to be running (at worker start); events seen since win."""
        with self._lock:
            if info.run_id not in self._runs and info.run_id not in self._ended:
                self._runs[info.run_id] = RunLiveness(info, heartbeat_at_ms, last_step, heartbeat_at_ms)

    def newly_crashed(self, now_ms: int) -> list[tuple[RunInfo, LiveFields]]:
        """Runs whose heartbeats stopped ``crash_after_s`` ago, each reported once until it recovers."""
        crashed = []
        with self._lock:
            for state in self._runs.values():
                if not state.crashed and now_ms - state.heartbeat_at_ms >= self._crash_after_ms:
                    state.crashed = True
                    crashed.append((state.info, LiveFields(state.heartbeat_at_ms, state.last_step, stalled=False)))
        return crashed
