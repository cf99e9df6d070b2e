"""The mapping of each table, exact rows: events in, rows out, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from runstream_core.events import (
    HardwareBatch,
    Heartbeat,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    RunUpdate,
    encode_event,
)
from runstream_worker.decode import SourceRecord, decode_batch
from runstream_worker.rows import to_rows
from runstream_worker.tables import hardware, metrics, params, pipeline_health, runs, summary
from runstream_worker.tables.runs import NO_LIVE_FIELDS, LiveFields

INFO = RunInfo(
    run_id="r1",
    team="t",
    project="p",
    user="ada",
    name="first",
    group="sweep",
    host="node-1",
    git_commit="abc123",
    tags={"a": "b"},
    started_at_ms=1_000,
    world_size=2,
)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def identity(status: str) -> list[object]:
    """The columns of ``INFO``'s row up to the status."""
    return ["t", "p", "r1", "first", "sweep", "ada", "node-1", "abc123", {"a": "b"}, status]


def test_metric_points_become_columns_in_column_order() -> None:
    columns = metrics.columns()
    metrics.extend(
        columns,
        MetricBatch(
            producer_id="pid",
            seq=4,
            rank=1,
            run_id="r1",
            team="t",
            project="p",
            keys=["a", "b"],
            steps=[1, 2],
            ts_ms=[10, 11],
            values=[0.5, 1.5],
        ),
    )
    assert dict(zip(metrics.COLUMNS, columns, strict=True)) == {
        "team": ["t", "t"],
        "project": ["p", "p"],
        "run_id": ["r1", "r1"],
        "key": ["a", "b"],
        "step": [1, 2],
        "ts": [10, 11],
        "value": [0.5, 1.5],
        "producer_id": ["pid", "pid"],
        "seq": [4, 4],
        "rank": [1, 1],
    }


def test_hardware_readings_become_columns_in_column_order() -> None:
    columns = hardware.columns()
    hardware.extend(
        columns,
        HardwareBatch(
            producer_id="pid",
            seq=2,
            rank=3,
            run_id="r1",
            team="t",
            project="p",
            host="node-7",
            user="ada",
            interval_ms=10_000,
            ts_ms=[50, 51],
            keys=["gpu.power_watts", "cpu.percent"],
            devices=["gpu1", ""],
            values=[250.0, 12.5],
        ),
    )
    assert dict(zip(hardware.COLUMNS, columns, strict=True)) == {
        "team": ["t", "t"],
        "project": ["p", "p"],
        "run_id": ["r1", "r1"],
        "host": ["node-7", "node-7"],
        "rank": [3, 3],
        "key": ["gpu.power_watts", "cpu.percent"],
        "device": ["gpu1", ""],
        "ts": [50, 51],
        "value": [250.0, 12.5],
        "interval_ms": [10_000, 10_000],
        "producer_id": ["pid", "pid"],
        "seq": [2, 2],
        "user": ["ada", "ada"],
    }


def test_a_run_row_holds_every_column_in_order() -> None:
    live = LiveFields(heartbeat_at_ms=5_000, last_step=42, stalled=True)
    row = runs.row(INFO, RunStatus.FINISHED, at(9_000), at(9_000), live)
    assert dict(zip(runs.COLUMNS, row, strict=True)) == {
        "team": "t",
        "project": "p",
        "run_id": "r1",
        "name": "first",
        "run_group": "sweep",
        "user": "ada",
        "host": "node-1",
        "git_commit": "abc123",
        "tags": {"a": "b"},
        "status": "finished",
        "started_at": at(1_000),
        "ended_at": at(9_000),
        "updated_at": at(9_000),
        "world_size": 2,
        "stalled": 1,
        "heartbeat_at": at(5_000),
        "last_step": 42,
    }


def test_lifecycle_events_version_their_rows() -> None:
    live = LiveFields(heartbeat_at_ms=2_000, last_step=7)
    # A start versions at the start, or the resume when later.
    assert runs.started(RunStart(run=INFO), NO_LIVE_FIELDS) == [
        *identity("running"),
        at(1_000),
        None,
        at(1_000),
        2,
        0,
        None,
        -1,
    ]
    resumed = runs.started(RunStart(run=INFO, resumed_at_ms=4_000), live)
    assert resumed[12:] == [at(4_000), 2, 0, at(2_000), 7]
    # An update is never older than the start.
    assert runs.updated(RunUpdate(run=INFO, ts_ms=500), live)[12] == at(1_000)
    assert runs.updated(RunUpdate(run=INFO, ts_ms=3_000), live)[12] == at(3_000)
    # An end outranks every row of its run from before it, even in the same millisecond (the start,
    # a heartbeat); the later last step wins; never stalled.
    end = runs.ended(RunEnd(run=INFO, status=RunStatus.FAILED, ended_at_ms=1_000, step=3), LiveFields(2_000, 7, True))
    assert end == [*identity("failed"), at(1_000), at(1_000), at(1_001), 2, 0, at(2_000), 7]
    end = runs.ended(RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=6_000, step=9), live)
    assert end[9:] == ["finished", at(1_000), at(6_000), at(6_001), 2, 0, at(2_000), 9]


def test_heartbeats_of_rank_zero_write_live_state_others_nothing() -> None:
    beat = Heartbeat(run=INFO, ts_ms=1_500, step=7)
    assert runs.heartbeat(beat, None) == [*identity("running"), at(1_000), None, at(1_500), 2, 0, at(1_500), 7]
    tracked = runs.heartbeat(beat, LiveFields(heartbeat_at_ms=1_400, last_step=3, stalled=True))
    assert tracked is not None and tracked[12:] == [at(1_500), 2, 1, at(1_400), 3]
    assert runs.heartbeat(Heartbeat(run=INFO, ts_ms=1_500, step=7, rank=1), None) is None


def test_a_crashed_run_is_versioned_just_after_the_newest_row_seen() -> None:
    row = runs.crashed(INFO, LiveFields(heartbeat_at_ms=200_000, last_step=5), last_version_ms=2_000)
    assert row == [*identity("crashed"), at(1_000), None, at(2_001), 2, 0, at(200_000), 5]
    # An end written later outranks it, also one from the millisecond of the last heartbeat.
    end = runs.ended(RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=2_000), NO_LIVE_FIELDS)
    assert end[12] >= row[12]


def test_running_runs_map_back_onto_the_run_they_were_written_from() -> None:
    stored = ("t", "p", "r1", "first", "sweep", "ada", "node-1", "abc123", {"a": "b"}, 1_000, 2, 7_000, 12, 6_500)
    assert runs.running_run(stored) == runs.RunningRun(INFO, 7_000, 12, 6_500)
    never_beat = (*stored[:11], None, -1, 1_000)
    assert runs.running_run(never_beat) == runs.RunningRun(INFO, None, -1, 1_000)


def test_params_and_summary_rows() -> None:
    version = at(3_000)
    assert params.rows(INFO, {"lr": "0.1", "opt": "adamw"}, version) == [
        ["t", "p", "r1", "lr", "0.1", version],
        ["t", "p", "r1", "opt", "adamw", version],
    ]
    assert summary.rows(INFO, {"acc": 0.9, "note": "ok"}, version) == [
        ["t", "p", "r1", "acc", 0.9, "", version],
        ["t", "p", "r1", "note", None, "ok", version],
    ]


def test_pipeline_health_row_of_an_interval() -> None:
    interval = pipeline_health.Interval(
        seconds=10.0004,
        records=12,
        points=3_000,
        hardware_readings=40,
        dead_letters=1,
        replays=2,
        crashed_runs=1,
        batch_ms=(30.0, 10.0, 20.0),
    )
    row = pipeline_health.row("host:1", interval, lag=5, now_ms=1_700_000_000_000)
    assert dict(zip(pipeline_health.COLUMNS, row, strict=True)) == {
        "ts": 1_700_000_000_000,
        "worker": "host:1",
        "interval_s": 10.0,
        "records": 12,
        "points": 3_000,
        "hardware_readings": 40,
        "dead_letters": 1,
        "replays": 2,
        "batches": 3,
        "crashed_runs": 1,
        "consumer_lag": 5,
        "batch_p50_ms": 20.0,
        "batch_max_ms": 30.0,
    }
    assert pipeline_health.row("w", pipeline_health.Interval(seconds=1.0), 0, 0)[8:] == [0, 0, 0, 0.0, 0.0]


def test_to_rows_sends_each_event_to_its_tables_with_the_live_fields() -> None:
    live = {("t", "p", "r1"): LiveFields(heartbeat_at_ms=1_200, last_step=4)}
    events = [
        RunStart(run=INFO, params={"lr": "0.1"}),
        RunUpdate(run=INFO, ts_ms=2_000, params={"lr": "0.2"}, summary={"acc": 0.5}),
        MetricBatch(run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[5], values=[1.0]),
        Heartbeat(run=INFO, ts_ms=2_500, step=4),
    ]
    rows = to_rows(events, live)
    assert rows.counts() == {"metrics": 1, "hardware": 0, "runs": 3, "params": 2, "summary": 1, "pipeline_health": 0}
    assert rows.heartbeats == 1
    assert [row[12:] for row in rows.runs] == [
        [at(1_000), 2, 0, at(1_200), 4],
        [at(2_000), 2, 0, at(1_200), 4],
        [at(2_500), 2, 0, at(1_200), 4],
    ]
    assert rows.params == [["t", "p", "r1", "lr", "0.1", at(1_000)], ["t", "p", "r1", "lr", "0.2", at(2_000)]]


def test_decoding_follows_the_core_topics_table() -> None:
    start = encode_event(RunStart(run=INFO))
    points = encode_event(MetricBatch(run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[0], values=[1]))
    records = [
        SourceRecord("x.runs", 0, 0, start),
        SourceRecord("x.metrics", 0, 1, points),
        SourceRecord("x.hardware", 0, 2, points),
        SourceRecord("x.dead-letters", 0, 3, start),
        SourceRecord("y.runs", 0, 4, start),  # another prefix's topic
    ]
    decoded = decode_batch(records, "x.")
    assert [type(e).__name__ for e in decoded.events] == ["RunStart", "MetricBatch"]
    assert [(r.record.offset, r.reason) for r in decoded.rejected] == [
        (2, "event type MetricBatch does not belong on x.hardware"),
        (3, "event type RunStart does not belong on x.dead-letters"),
        (4, "event type RunStart does not belong on y.runs"),
    ]
