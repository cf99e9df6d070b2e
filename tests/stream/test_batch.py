"""Decoding record batches into rows: exact columns, bad records set aside with reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from runstream_core.events import (
    NO_CONTROL_PATTERN,
    TEAM_NAME_WIRE_PATTERN,
    Event,
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
from runstream_worker.decode import (
    SourceRecord,
    StoredRows,
    decode_batch,
    dedup_token,
    drop_stored,
    token_created_ms,
)

INFO = RunInfo(run_id="r1", team="t", project="p", name="n", tags={"a": "b"}, started_at_ms=1_000)


def rec(topic: str, offset: int, value: bytes | None) -> SourceRecord:
    return SourceRecord(topic, 0, offset, value)


def test_metric_batches_become_columns() -> None:
    batch = MetricBatch(
        producer_id="pid",
        seq=4,
        run_id="r1",
        team="t",
        project="p",
        keys=["a", "b"],
        steps=[1, 1],
        ts_ms=[10, 11],
        values=[0.5, 1.5],
    )
    decoded = decode_batch([rec("x.metrics", 0, encode_event(batch))], "x.")
    assert decoded.rejected == []
    assert decoded.rows.metrics == [
        ["t", "t"],
        ["p", "p"],
        ["r1", "r1"],
        ["a", "b"],
        [1, 1],
        [10, 11],
        [0.5, 1.5],
        ["pid", "pid"],
        [4, 4],
        [0, 0],
    ]


def test_lifecycle_events_become_run_and_param_rows() -> None:
    records = [
        rec("x.runs", 0, encode_event(RunStart(run=INFO, params={"lr": "0.1"}))),
        rec("x.runs", 1, encode_event(Heartbeat(run=INFO, ts_ms=1_500, step=7))),
        rec("x.runs", 2, encode_event(RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=1_000))),
    ]
    decoded = decode_batch(records, "x.")
    started = datetime.fromtimestamp(1, tz=UTC)
    assert decoded.rows.heartbeats == 1
    assert decoded.rows.params == [["t", "p", "r1", "lr", "0.1", started]]
    start_row, beat_row, end_row = decoded.rows.runs
    beat = datetime.fromtimestamp(1.5, tz=UTC)
    # status, started, ended, version, world size, stalled, last heartbeat, last step
    assert start_row[9:] == ["running", started, None, started, 1, 0, None, -1]
    assert beat_row[9:] == ["running", started, None, beat, 1, 0, beat, 7]
    # An end in the same millisecond as the start still outranks it.
    assert end_row[9:] == ["finished", started, started, datetime.fromtimestamp(1.001, tz=UTC), 1, 0, None, -1]


def test_bad_records_are_rejected_with_reasons_and_good_ones_kept() -> None:
    good = MetricBatch(run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[0], values=[1.0])
    records = [
        rec("x.metrics", 0, None),
        rec("x.metrics", 1, b"\xc1"),
        rec("x.metrics", 2, encode_event(good)),
        rec("x.runs", 3, encode_event(good)),
    ]
    decoded = decode_batch(records, "x.")
    assert [(r.record.offset, r.reason.split(":")[0]) for r in decoded.rejected] == [
        (0, "empty record value"),
        (1, "invalid event"),
        (3, "event type MetricBatch does not belong on x.runs"),
    ]
    assert decoded.rows.metric_points == 1
    assert decoded.records == 4


def test_names_with_control_characters_are_set_aside_for_the_dead_letter_topic() -> None:
    good = MetricBatch(run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[0], values=[1.0])
    bad_key = {**msgspec.to_builtins(good), "keys": ["a\n"]}
    bad_team = {**msgspec.to_builtins(RunStart(run=INFO)), "run": {**msgspec.to_builtins(INFO), "team": "t\x00"}}
    bad_tag = {**msgspec.to_builtins(RunStart(run=INFO)), "run": {**msgspec.to_builtins(INFO), "tags": {"k": "v\x85"}}}
    records = [
        rec("x.metrics", 0, msgspec.msgpack.encode(bad_key)),
        rec("x.metrics", 1, encode_event(good)),
        rec("x.runs", 2, msgspec.msgpack.encode(bad_team)),
        rec("x.runs", 3, msgspec.msgpack.encode(bad_tag)),
    ]
    decoded = decode_batch(records, "x.")
    pattern = f"Expected `str` matching regex {NO_CONTROL_PATTERN!r}"
    assert [(r.record.offset, r.reason) for r in decoded.rejected] == [
        (0, "invalid event: metric key 'a\\n' holds control character U+000A"),
        (2, f"invalid event: Expected `str` matching regex {TEAM_NAME_WIRE_PATTERN!r} - at `$.run.team`"),
        (3, f"invalid event: {pattern} - at `$.run.tags[...]`"),
    ]
    assert decoded.rows.metric_points == 1


def points(producer: str, seq: int, steps: list[int], ts_ms: list[int] | None = None) -> MetricBatch:
    return MetricBatch(
        producer_id=producer,
        seq=seq,
        run_id="r1",
        team="t",
        project="p",
        keys=["a"] * len(steps),
        steps=steps,
        ts_ms=ts_ms if ts_ms is not None else [0] * len(steps),
        values=[1.0] * len(steps),
    )


def test_dedup_token_names_offsets_and_record_ids_not_their_order() -> None:
    a, b = rec("x.metrics", 5, b""), SourceRecord("x.metrics", 1, 5, b"")
    ea, eb = points("p1", 0, [0]), points("p1", 1, [1])
    assert dedup_token([a, b], [ea, eb], 7) == dedup_token([b, a], [eb, ea], 7)
    assert dedup_token([a], [ea], 7) != dedup_token([b], [ea], 7)
    # A topic created again reuses offsets: other records at the same offsets are other data.
    assert dedup_token([a], [ea], 7) != dedup_token([a], [points("p2", 0, [0])], 7)
    assert dedup_token([a], [ea], 7) != dedup_token([a], [points("p1", 9, [0])], 7)
    # The time it was made ends it, and is read back from it and from the names derived from it.
    token = dedup_token([a], [ea], 1_700_000_000_123)
    assert token.endswith("@1700000000123")
    assert token_created_ms(token) == token_created_ms(f"metrics:{token}:202301-202312") == 1_700_000_000_123
    assert token_created_ms("offsets-a") is None and token_created_ms("metrics:x@") is None


def test_stored_records_are_dropped_and_partly_stored_ones_keep_their_other_partitions() -> None:
    jan, feb = 1_704_067_200_000, 1_706_745_600_000  # 2024-01-01 and 2024-02-01, UTC
    events: list[Event] = [
        points("p1", 0, [0, 1]),
        points("p1", 1, [2, 3, 4], [jan, feb, feb + 1]),
        points("p1", 2, [5]),
        Heartbeat(run=INFO, ts_ms=5, producer_id="p1", seq=0),  # same id, another kind: never dropped
    ]
    sources = [rec("x.metrics", i, b"") for i in range(4)]
    found = [
        StoredRows("p1", 0, 197001, "metrics:t@1", 2),
        StoredRows("p1", 1, 202401, "metrics:t@1", 1),  # its February points never made it
        StoredRows("p9", 2, 197001, "metrics:t@1", 1),
    ]
    kept, kept_sources, replays = drop_stored(events, sources, found)
    assert replays == 1
    assert [s.offset for s in kept_sources] == [1, 2, 3]
    partial = kept[0]
    assert isinstance(partial, MetricBatch)
    assert (partial.steps, partial.ts_ms) == ([3, 4], [feb, feb + 1])
    assert kept[1:] == events[2:]


def test_hardware_batches_become_columns_with_rank_and_interval() -> None:
    batch = HardwareBatch(
        producer_id="pid",
        seq=2,
        rank=3,
        run_id="r1",
        team="t",
        project="p",
        host="node-7",
        interval_ms=10_000,
        ts_ms=[50, 50],
        keys=["gpu.power_watts", "cpu.percent"],
        devices=["gpu1", ""],
        values=[250.0, 12.5],
    )
    decoded = decode_batch([rec("x.hardware", 0, encode_event(batch))], "x.")
    assert decoded.rows.hardware == [
        ["t", "t"],
        ["p", "p"],
        ["r1", "r1"],
        ["node-7", "node-7"],
        [3, 3],
        ["gpu.power_watts", "cpu.percent"],
        ["gpu1", ""],
        [50, 50],
        [250.0, 12.5],
        [10_000, 10_000],
        ["pid", "pid"],
        [2, 2],
        ["", ""],
    ]


def test_run_updates_carry_tags_params_and_summary_versioned_by_their_time() -> None:
    tagged = RunInfo(run_id="r1", team="t", project="p", tags={"best": ""}, started_at_ms=1_000)
    update = RunUpdate(run=tagged, ts_ms=2_000, params={"lr": "0.2"}, summary={"acc": 0.9, "note": "ok"})
    rows = decode_batch([rec("x.runs", 0, encode_event(update))], "x.").rows
    at = datetime.fromtimestamp(2, tz=UTC)
    assert rows.params == [["t", "p", "r1", "lr", "0.2", at]]
    assert rows.summary == [["t", "p", "r1", "acc", 0.9, "", at], ["t", "p", "r1", "note", None, "ok", at]]
    (run_row,) = rows.runs
    assert run_row[8:10] == [{"best": ""}, "running"] and run_row[12] == at


def test_repeats_of_a_record_are_dropped_within_a_batch() -> None:
    records = [
        rec("x.metrics", 0, encode_event(points("p1", 0, [0]))),
        rec("x.metrics", 1, encode_event(points("p1", 1, [1]))),
        rec("x.metrics", 2, encode_event(points("p1", 0, [0]))),
    ]
    decoded = decode_batch(records, "x.")
    assert decoded.replays == 1
    assert [s.offset for s in decoded.sources] == [0, 1]
    assert decoded.rows.metrics[4] == [0, 1]
