"""The live view of runs, from lifecycle events alone: crashed, recovered, stalled, ended, seeded."""

from __future__ import annotations

from runstream_core.events import Heartbeat, MetricBatch, RunEnd, RunInfo, RunStart, RunStatus, RunUpdate
from runstream_worker.liveness import LivenessTracker
from runstream_worker.tables.runs import LiveFields

INFO = RunInfo(run_id="r1", team="t", project="p", started_at_ms=1_000)
OTHER = RunInfo(run_id="r2", team="t", project="p", started_at_ms=1_000)


def tracker() -> LivenessTracker:
    return LivenessTracker(crash_after_s=10, stall_after_s=30)


def beat(ts_ms: int, step: int, run: RunInfo = INFO, rank: int = 0) -> Heartbeat:
    return Heartbeat(run=run, ts_ms=ts_ms, step=step, rank=rank)


def test_a_run_whose_heartbeats_stop_is_reported_crashed_once_until_it_recovers() -> None:
    live = tracker()
    assert live.observe([RunStart(run=INFO), beat(2_000, 1)]) == {"r1": LiveFields(2_000, 1, False)}
    assert live.newly_crashed(11_999) == []
    assert live.newly_crashed(12_000) == [(INFO, LiveFields(2_000, 1, False))]
    assert live.newly_crashed(60_000) == []  # reported once
    live.observe([beat(61_000, 2)])  # heartbeats are back
    assert live.newly_crashed(70_000) == []
    assert live.newly_crashed(71_000) == [(INFO, LiveFields(61_000, 2, False))]


def test_a_run_is_stalled_while_its_step_stands_still_under_heartbeats() -> None:
    live = tracker()
    live.observe([RunStart(run=INFO), beat(2_000, 5)])
    assert live.observe([beat(31_999, 5)]) == {"r1": LiveFields(31_999, 5, False)}
    assert live.observe([beat(32_000, 5)]) == {"r1": LiveFields(32_000, 5, True)}
    assert live.observe([beat(33_000, 6)]) == {"r1": LiveFields(33_000, 6, False)}


def test_ended_runs_leave_the_view_and_late_heartbeats_do_not_bring_them_back() -> None:
    live = tracker()
    touched = live.observe(
        [RunStart(run=INFO), beat(2_000, 1), RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=3_000)]
    )
    assert touched == {}
    assert live.observe([beat(4_000, 2), RunUpdate(run=INFO, ts_ms=4_000)]) == {}
    assert len(live) == 0 and live.newly_crashed(100_000) == []
    # A resumed run is open again.
    assert live.observe([RunStart(run=INFO, resumed_at_ms=50_000)]) == {"r1": LiveFields(50_000, -1, False)}
    assert live.newly_crashed(60_000) == [(INFO, LiveFields(50_000, -1, False))]


def test_only_rank_zero_lifecycle_events_count() -> None:
    live = tracker()
    points = MetricBatch(run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[0], values=[1.0])
    assert live.observe([beat(2_000, 1, rank=1), points]) == {}
    assert len(live) == 0


def test_seeded_runs_are_watched_but_what_was_seen_since_wins() -> None:
    live = tracker()
    live.observe([beat(20_000, 3, run=OTHER)])
    live.seed(OTHER, heartbeat_at_ms=1_000, last_step=0)  # older than what was seen: ignored
    live.seed(INFO, heartbeat_at_ms=5_000, last_step=9)
    assert len(live) == 2
    assert live.newly_crashed(15_000) == [(INFO, LiveFields(5_000, 9, False))]
    assert live.newly_crashed(30_000) == [(OTHER, LiveFields(20_000, 3, False))]
