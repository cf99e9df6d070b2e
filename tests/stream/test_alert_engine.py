"""The alert engine as a pure step: episodes, spacing, replays, time-based rules, scope and bounds."""

from __future__ import annotations

from typing import Any

from runstream_core import alert_rules as ar
from runstream_core.events import Event, Heartbeat, MetricBatch, RunEnd, RunInfo, RunStart, RunStatus
from runstream_worker.alerts import state as st
from runstream_worker.alerts.engine import MAX_SUBJECTS, AlertEngine
from runstream_worker.tables.alerts import AlertMessage

INFO = RunInfo(run_id="r1", team="vision", project="p", group="sweep-1", tags={"gold": ""})
KEY = ("vision", "p", "r1")


def rules(*rule: dict[str, Any]) -> dict[str, ar.RuleSet]:
    hooks = [{"name": "hook", "url_secret": "HOOK"}]
    return {"vision": ar.validate({"team": "vision", "webhooks": hooks, "rules": list(rule)})}


def points(key: str, values: list[float], seq: int, first_step: int = 0, producer: str = "p1") -> MetricBatch:
    n = len(values)
    return MetricBatch(
        producer_id=producer, seq=seq, run_id="r1", team="vision", project="p", keys=[key] * n,
        steps=list(range(first_step, first_step + n)), ts_ms=[0] * n, values=values,
    )  # fmt: skip


def summary(messages: list[AlertMessage]) -> list[tuple[str, str, str]]:
    return [(m.alert_id, m.event, m.delivery) for m in messages]


def engine_with(events: list[Event], book: dict[str, ar.RuleSet], now_ms: int = 1_000) -> tuple[AlertEngine, Any]:
    engine = AlertEngine()
    engine.load(KEY, None, {})
    return engine, engine.observe(events, book, now_ms)


def test_episodes_fire_once_recover_and_are_spaced_by_wait_duration() -> None:
    book = rules({"name": "nan", "kind": "nan", "metric": "loss", "wait_duration_s": 10, "notify": ["hook"]})
    nan = float("nan")
    engine, out = engine_with([points("loss", [1.0, nan, nan, 2.0, nan, 3.0], seq=1)], book, now_ms=1_000)
    assert summary(out.messages) == [
        ("nan/loss/1/fired", "fired", "pending"),
        ("nan/loss/1/resolved", "resolved", "pending"),
        ("nan/loss/2/fired", "fired", "suppressed"),  # within 10 s of the last one sent
        ("nan/loss/2/resolved", "resolved", "suppressed"),
    ]
    later = engine.observe([points("loss", [nan], seq=2, first_step=6)], book, 11_001)
    assert summary(later.messages) == [("nan/loss/3/fired", "fired", "pending")]


def test_a_replayed_record_is_not_evaluated_again_even_from_stored_state() -> None:
    book = rules({"name": "nan", "kind": "nan", "metric": "loss", "wait_duration_s": 0})
    batch = points("loss", [float("nan")], seq=5)
    engine, out = engine_with([batch], book)
    assert len(out.messages) == 1
    stored = {name: st.encode(entry) for name, entry in engine.entries[KEY].items()}
    run = st.encode(engine.runs[KEY])
    again = AlertEngine()  # a new worker, loading what the first one wrote
    again.load(KEY, st.decode_run(run), {n: e for n, b in stored.items() if (e := st.decode_entry(b)) is not None})
    assert again.observe([batch], book, 2_000).messages == []
    assert summary(again.observe([points("loss", [1.0], seq=6)], book, 2_000).messages) == [
        ("nan/loss/1/resolved", "resolved", "none")
    ]
    # Records of another producer, or of the same producer on another topic, are not replays.
    assert len(again.observe([points("loss", [float("inf")], seq=6, producer="p2")], book, 2_000).messages) == 1


def test_stalled_and_silent_runs_on_the_workers_clock() -> None:
    book = rules(
        {"name": "stalled", "kind": "stalled", "after_s": 10}, {"name": "silent", "kind": "no_heartbeat", "after_s": 30}
    )
    engine, _ = engine_with([RunStart(run=INFO), Heartbeat(run=INFO, ts_ms=0, step=3)], book, now_ms=1)
    assert engine.tick(book, 9_000).messages == []
    assert engine.observe([Heartbeat(run=INFO, ts_ms=0, step=3)], book, 5_000).messages == []
    assert summary(engine.tick(book, 10_500).messages) == [("stalled//1/fired", "fired", "none")]
    assert engine.observe([Heartbeat(run=INFO, ts_ms=0, step=3)], book, 10_600).messages == []  # once
    moved = engine.observe([Heartbeat(run=INFO, ts_ms=0, step=4)], book, 11_000)
    assert summary(moved.messages) == [("stalled//1/resolved", "resolved", "none")]
    assert summary(engine.tick(book, 41_000).messages) == [("silent//1/fired", "fired", "none")]
    engine.observe([RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=0)], book, 42_000)
    assert engine.tick(book, 100_000).messages == []  # an ended run is not watched


def test_rules_scoped_by_tags_wait_for_the_runs_start() -> None:
    book = rules({"name": "gold", "kind": "nan", "metric": "*", "scope": {"group": "sweep-*", "tags": ["gold"]}})
    engine, out = engine_with([points("x", [float("nan")], seq=2)], book)
    assert out.messages == [] and KEY in engine.deferred
    started = engine.observe([RunStart(run=INFO, producer_id="p1", seq=1)], book, 2_000)
    assert summary(started.messages) == [("gold/x/1/fired", "fired", "none")]
    other = AlertEngine()
    other.load(KEY, None, {})
    plain = RunInfo(run_id="r1", team="vision", project="p", group="sweep-1")
    other.observe([RunStart(run=plain), points("x", [float("nan")], seq=2)], book, 1_000)
    assert other.deferred == {} and other.entries.get(KEY, {}) == {}


def test_a_changed_rule_starts_over_and_keys_per_rule_are_bounded() -> None:
    engine, _ = engine_with(
        [points("acc", [9.0, 9.0], seq=1)],
        rules({"name": "avg", "kind": "threshold", "metric": "acc", "above": 5, "window": 3}),
    )
    changed = rules({"name": "avg", "kind": "threshold", "metric": "acc", "above": 5, "window": 2})
    assert engine.observe([points("acc", [9.0], seq=2, first_step=2)], changed, 2_000).messages == []
    assert engine.entries[KEY]["avg/acc"].window == [9.0]  # the old window was not reused
    wide = rules({"name": "any", "kind": "nan", "metric": "*"})
    keys = [MetricBatch(
        producer_id="p1", seq=10 + i, run_id="r1", team="vision", project="p", keys=[f"k{i}"], steps=[0],
        ts_ms=[0], values=[float("nan")],
    ) for i in range(MAX_SUBJECTS + 5)]  # fmt: skip
    out = engine.observe(keys, wide, 3_000)
    assert len(out.messages) == MAX_SUBJECTS


def test_failed_rules_fire_once_for_the_statuses_they_list() -> None:
    book = rules({"name": "failed", "kind": "failed", "statuses": ["failed", "crashed"], "notify": ["hook"]})
    engine, _ = engine_with([RunStart(run=INFO)], book)
    crashed = engine.crashed(INFO, book, 2_000)
    assert summary(crashed.messages) == [("failed//1/fired", "fired", "pending")]
    assert "heartbeats stopped" in crashed.messages[0].text
    ended = engine.observe([RunEnd(run=INFO, status=RunStatus.FAILED, ended_at_ms=0)], book, 3_000)
    assert summary(ended.messages) == [("failed//2/fired", "fired", "suppressed")]  # within wait_duration
    finished = AlertEngine()
    finished.load(KEY, None, {})
    assert finished.observe([RunEnd(run=INFO, status=RunStatus.KILLED, ended_at_ms=0)], book, 1_000).messages == []


def test_quiet_runs_are_forgotten_and_read_again_from_their_state() -> None:
    book = rules({"name": "nan", "kind": "nan", "metric": "loss"})
    engine, _ = engine_with([RunStart(run=INFO), RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=0)], book)
    engine.tick(book, 1_000 + 599_000)
    assert KEY in engine.runs
    engine.tick(book, 1_000 + 601_000)
    assert KEY not in engine.runs and KEY not in engine.entries
