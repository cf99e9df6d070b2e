"""Imported runs as records: original times, the schema's bounds, and identities that repeat exactly."""

from __future__ import annotations

import math
from pathlib import Path

from runstream._history import HistoricRun, HistoryWriter, chunk_points
from runstream._spool import read_spool
from runstream.settings import Settings
from runstream_core.events import (
    MAX_EPOCH_MS,
    MetricBatch,
    RunEnd,
    RunStart,
    RunStatus,
    RunUpdate,
    decode_event,
    encode_event,
)


def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, runs_dir=tmp_path / "runs")  # type: ignore[call-arg]


def sample(**changes: object) -> HistoricRun:
    run = HistoricRun(
        source="test",
        source_key=("exp", "r1"),
        run_id="r1",
        project="proj",
        started_at_ms=1_700_000_000_000,
        ended_at_ms=1_700_000_100_000,
        status=RunStatus.FAILED,
        name="first",
        tags={"stage": "pretrain"},
        params={"lr": "0.1"},
        summary={"best": 0.5},
        metrics={
            "loss": [(2, 1_700_000_002_000, 0.25), (0, 1_700_000_000_500, 1.0), (1, 1_700_000_001_000, math.nan)],
            "acc": [(0, 1_700_000_000_500, 0.1)],
        },
    )
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def test_a_run_becomes_start_points_summary_and_end_with_its_own_times(tmp_path: Path) -> None:
    writer = HistoryWriter(settings(tmp_path), "Vision Team")
    events = [event for _, event in writer.events(sample()) or []]
    start, acc, loss, update, end = events
    assert isinstance(start, RunStart) and isinstance(update, RunUpdate) and isinstance(end, RunEnd)
    assert isinstance(acc, MetricBatch) and isinstance(loss, MetricBatch)
    assert start.run.team == "vision_team" and start.run.started_at_ms == 1_700_000_000_000
    assert start.params == {"lr": "0.1"} and start.run.tags == {"stage": "pretrain"}
    assert loss.steps == [0, 1, 2] and loss.ts_ms == [1_700_000_000_500, 1_700_000_001_000, 1_700_000_002_000]
    assert loss.values[0] == 1.0 and math.isnan(loss.values[1]) and loss.values[2] == 0.25
    assert update.summary == {"best": 0.5} and update.ts_ms == 1_700_000_100_000
    assert (end.status, end.ended_at_ms, end.step) == (RunStatus.FAILED, 1_700_000_100_000, 2)
    assert writer.report.points == 4
    for event in events:  # every record passes the worker's own decoding (NaN != NaN: compared encoded)
        assert encode_event(decode_event(encode_event(event))) == encode_event(event)


def test_the_same_run_gives_the_same_records_byte_for_byte(tmp_path: Path) -> None:
    first = HistoryWriter(settings(tmp_path), "vision").events(sample())
    again = HistoryWriter(settings(tmp_path), "vision").events(sample())
    assert first is not None and again is not None
    assert [encode_event(e) for _, e in first] == [encode_event(e) for _, e in again]
    other = HistoryWriter(settings(tmp_path), "vision").events(sample(source_key=("exp", "r2")))
    assert other is not None
    assert {e.producer_id for _, e in first}.isdisjoint({e.producer_id for _, e in other})


def test_a_run_that_grew_keeps_its_full_records_and_renumbers_only_the_last(tmp_path: Path) -> None:
    size = chunk_points("loss")
    points = [(step, 1_700_000_000_000 + step, float(step)) for step in range(size + 10)]
    before = HistoryWriter(settings(tmp_path), "vision").events(sample(metrics={"loss": points}))
    grown = [*points, (size + 10, 1_700_000_000_000 + size + 10, 1.0)]
    after = HistoryWriter(settings(tmp_path), "vision").events(sample(metrics={"loss": grown}))
    assert before is not None and after is not None
    old = [(e.seq, len(e.steps)) for _, e in before if isinstance(e, MetricBatch)]
    new = [(e.seq, len(e.steps)) for _, e in after if isinstance(e, MetricBatch)]
    assert old == [(size, size), (size + 1 + 10, 10)]
    assert new == [(size, size), (size + 1 + 11, 11)]


def test_out_of_bounds_input_is_skipped_and_counted_and_the_rest_kept(tmp_path: Path) -> None:
    writer = HistoryWriter(settings(tmp_path), "vision")
    run = sample(
        name="n" * 300,
        tags={"t" * 300: "x", "ok": "y"},
        params={"p": "v" * 70_000, "fine": "1"},
        metrics={
            "k" * 257: [(0, 1_700_000_000_000, 1.0)],
            "bad\x07key": [(0, 1_700_000_000_000, 1.0)],
            "loss": [
                (-1, 1_700_000_000_000, 1.0),
                (0, MAX_EPOCH_MS + 1, 1.0),
                (1, 1_700_000_000_000, "text"),
                (2, 1_700_000_000_000, math.inf),
                (3, 1_700_000_000_000, 0.5),
            ],
        },
    )
    events = writer.events(run)
    assert events is not None
    start = events[0][1]
    assert isinstance(start, RunStart)
    assert len(start.run.name) == 256 and start.run.name.endswith("n" * 255)
    assert start.run.tags == {"ok": "y"} and start.params == {"fine": "1"}
    (loss,) = [e for _, e in events if isinstance(e, MetricBatch)]
    assert loss.steps == [2, 3] and loss.values == [math.inf, 0.5]
    assert dict(writer.report.skipped) == {
        "run names shortened or cleaned (kept, changed)": 1,
        "tags refused (bounds)": 1,
        "params refused (bounds)": 1,
        "points: metric name refused (bounds)": 2,
        "points: step out of range (0 to 2**63-1)": 1,
        "points: time out of range (1970 to 2299)": 1,
        "points: value not a number": 1,
    }


def test_a_run_still_running_has_no_end(tmp_path: Path) -> None:
    events = HistoryWriter(settings(tmp_path), "vision").events(sample(ended_at_ms=None, status=RunStatus.RUNNING))
    assert events is not None
    assert not any(isinstance(e, RunEnd) for _, e in events)


def test_records_are_spooled_for_sync(tmp_path: Path) -> None:
    writer = HistoryWriter(settings(tmp_path), "vision")
    spool = writer._write(sample())
    assert spool is not None and spool.parent == tmp_path / "runs" / "imports"
    payloads = [record.payload for record in read_spool(spool)]
    assert payloads == [encode_event(e) for _, e in writer.events(sample()) or []]
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
