"""The live view of runs, from lifecycle events alone: crashed, recovered, stalled, ended, seeded.

Times given to ``observe`` are the worker's clock when the events arrived; the events' own times are
the producer's, which only version rows.
"""

from __future__ import annotations

from runstream_core.events import Heartbeat, MetricBatch, RunEnd, RunInfo, RunStart, RunStatus, RunUpdate
from runstream_worker.liveness import Crashed, LivenessTracker
from runstream_worker.tables.runs import LiveFields

INFO = RunInfo(run_id="r1", team="t", project="p", started_at_ms=1_000)
OTHER = RunInfo(run_id="r2", team="t", project="p", started_at_ms=1_000)
R1 = ("t", "p", "r1")


def tracker() -> LivenessTracker:
    return LivenessTracker(crash_after_s=10, stall_after_s=30)


def beat(ts_ms: int, step: int, run: RunInfo = INFO, rank: int = 0) -> Heartbeat:
    return Heartbeat(run=run, ts_ms=ts_ms, step=step, rank=rank)


def test_a_run_whose_heartbeats_stop_is_reported_crashed_once_until_it_recovers() -> None:
    live = tracker()
    assert live.observe([RunStart(run=INFO), beat(2_000, 1)], now_ms=2_000) == {R1: LiveFields(2_000, 1, False)}
    assert live.newly_crashed(11_999) == []
    assert live.newly_crashed(12_000) == [Crashed(INFO, LiveFields(2_000, 1, False), 2_000)]
    assert live.newly_crashed(60_000) == []  # reported once
    live.observe([beat(61_000, 2)], now_ms=61_000)  # heartbeats are back
    assert live.newly_crashed(70_000) == []
    assert live.newly_crashed(71_000) == [Crashed(INFO, LiveFields(61_000, 2, False), 61_000)]


def test_liveness_times_are_the_workers_clock_whatever_the_producers_says() -> None:
    for skew in (-3_600_000, 3_600_000):  # the producer's clock an hour behind, or ahead
        live = tracker()
        for now in range(10_000_000, 10_060_000, 5_000):
            assert live.observe([beat(now + skew, 1)], now_ms=now)[R1].heartbeat_at_ms == now
            assert live.newly_crashed(now + 4_000) == []
        # The crash row outranks the newest row seen, on the producer's clock.
        last = 10_055_000
        assert live.newly_crashed(last + 10_000) == [Crashed(INFO, LiveFields(last, 1, False), last + skew)]


def test_a_run_is_stalled_while_its_step_stands_still_under_heartbeats() -> None:
    live = tracker()
    live.observe([RunStart(run=INFO), beat(2_000, 5)], now_ms=2_000)
    assert live.observe([beat(31_999, 5)], now_ms=31_999) == {R1: LiveFields(31_999, 5, False)}
    assert live.observe([beat(32_000, 5)], now_ms=32_000) == {R1: LiveFields(32_000, 5, True)}
    assert live.observe([beat(33_000, 6)], now_ms=33_000) == {R1: LiveFields(33_000, 6, False)}


def test_ended_runs_leave_the_view_and_late_heartbeats_do_not_bring_them_back() -> None:
    live = tracker()
    touched = live.observe(
        [RunStart(run=INFO), beat(2_000, 1), RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=3_000)],
        now_ms=3_000,
    )
    assert touched == {}
    assert live.observe([beat(4_000, 2), RunUpdate(run=INFO, ts_ms=4_000)], now_ms=4_000) == {}
    assert len(live) == 0 and live.newly_crashed(100_000) == []
    # A resumed run is open again.
    assert live.observe([RunStart(run=INFO, resumed_at_ms=50_000)], now_ms=50_000) == {
        R1: LiveFields(50_000, -1, False)
    }
    assert live.newly_crashed(60_000) == [Crashed(INFO, LiveFields(50_000, -1, False), 50_000)]


def test_runs_of_the_same_id_in_two_teams_are_two_runs() -> None:
    live = tracker()
    vision = RunInfo(run_id="baseline", team="vision", project="p", started_at_ms=1_000)
    nlp = RunInfo(run_id="baseline", team="nlp", project="p", started_at_ms=1_000)
    live.observe([RunStart(run=vision), RunStart(run=nlp), beat(2_000, 1, vision), beat(2_000, 1, nlp)], now_ms=2_000)
    # vision's ends; nlp's stops beating: it is still watched, and found crashed.
    assert live.observe([RunEnd(run=vision, status=RunStatus.FINISHED, ended_at_ms=3_000)], now_ms=3_000) == {}
    assert len(live) == 1
    assert live.newly_crashed(12_000) == [Crashed(nlp, LiveFields(2_000, 1, False), 2_000)]
    # And what one team's run does shows on its own row only.
    touched = live.observe([beat(13_000, 7, nlp)], now_ms=13_000)
    assert touched == {("nlp", "p", "baseline"): LiveFields(13_000, 7, False)}


def test_only_rank_zero_lifecycle_events_count() -> None:
    live = tracker()
    points = MetricBatch(run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[0], values=[1.0])
    assert live.observe([beat(2_000, 1, rank=1), points], now_ms=2_000) == {}
    assert len(live) == 0


def test_seeded_runs_are_watched_but_what_was_seen_since_wins() -> None:
    live = tracker()
    live.observe([beat(20_000, 3, run=OTHER)], now_ms=20_000)
    live.seed(OTHER, heartbeat_at_ms=1_000, last_step=0, last_version_ms=900, now_ms=21_000)  # seen since: ignored
    live.seed(INFO, heartbeat_at_ms=5_000, last_step=9, last_version_ms=4_000, now_ms=21_000)
    never_beat = RunInfo(run_id="r3", team="t", project="p", started_at_ms=1_000)
    live.seed(never_beat, heartbeat_at_ms=None, last_step=-1, last_version_ms=1_000, now_ms=21_000)
    assert len(live) == 3
    assert live.newly_crashed(15_000) == [Crashed(INFO, LiveFields(5_000, 9, False), 4_000)]
    assert live.newly_crashed(30_000) == [Crashed(OTHER, LiveFields(20_000, 3, False), 20_000)]
    # A run that never sent a heartbeat has the crash delay from the worker's start.
    assert live.newly_crashed(31_000) == [Crashed(never_beat, LiveFields(21_000, -1, False), 1_000)]
