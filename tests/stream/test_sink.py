"""The ClickHouse sink on the real embedded engine: exact rows, and retried batches stored once."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from runstream_core.clickhouse import connect
from runstream_core.events import (
    HardwareBatch,
    Heartbeat,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    encode_event,
)
from runstream_core.hardware_keys import GPU_UTILIZATION_PERCENT
from runstream_worker.decode import SourceRecord, StoredRows, decode_batch
from runstream_worker.migrate import migrate
from runstream_worker.rows import RowBatch, to_rows
from runstream_worker.sink import ClickHouseSink, split_by_partition
from runstream_worker.tables import hardware, metrics, runs
from runstream_worker.tables.runs import LiveFields, RunningRun
from tests.fixtures.rollups import rollup_differences
from tests.fixtures.settings import StackSettings as Settings


def test_a_retried_batch_is_stored_once(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    batch = MetricBatch(
        producer_id="p1",
        seq=3,
        run_id="r1",
        team="t",
        project="p",
        keys=["loss", "loss"],
        steps=[0, 1],
        ts_ms=[1_700_000_000_000, 1_700_000_000_500],
        values=[0.5, float("nan")],
    )
    start = RunStart(run=RunInfo(run_id="r1", team="t", project="p", started_at_ms=1_700_000_000_000))
    records = [
        SourceRecord("runstream.metrics", 0, 7, encode_event(batch)),
        SourceRecord("runstream.runs", 0, 3, encode_event(start)),
    ]
    rows = decode_batch(records, "runstream.").rows
    sink = ClickHouseSink(chdb_settings)
    try:
        sink.write(rows, token="offsets-a")
        sink.write(rows, token="offsets-a")  # the retry after a lost acknowledgement
        sink.write(rows, token="offsets-b")  # a different source range is new data
    finally:
        sink.close()

    client = connect(chdb_settings)
    try:
        stored = client.query("SELECT step, toUnixTimestamp64Milli(ts), value FROM metrics ORDER BY step").result_rows
        runs = client.query("SELECT run_id, status FROM runs FINAL").result_rows
        rollup = client.query("SELECT key, points, last_step FROM metric_summary_view").result_rows
        records = client.query("SELECT count() FROM ingested_records").result_rows
    finally:
        client.close()
    # Two copies (tokens a and b), not three; NaN is stored as NaN.
    assert [(step, ts, repr(value)) for step, ts, value in stored] == [
        (0, 1_700_000_000_000, "0.5"),
        (0, 1_700_000_000_000, "0.5"),
        (1, 1_700_000_000_500, "nan"),
        (1, 1_700_000_000_500, "nan"),
    ]
    assert runs == [("r1", "running")]
    # The rollups fed by materialized views count the retry once as well.
    assert rollup == [("loss", 4, 1)]
    assert records == [(2,)]


def test_stored_records_finds_exactly_the_ingested_producer_sequences(chdb_settings: Settings) -> None:
    migrate(chdb_settings)

    def batch(producer: str, seq: int) -> SourceRecord:
        event = MetricBatch(
            producer_id=producer,
            seq=seq,
            run_id="r1",
            team="t",
            project="p",
            keys=["a"],
            steps=[seq],
            ts_ms=[0],
            values=[1.0],
        )
        return SourceRecord("runstream.metrics", 0, seq, encode_event(event))

    sink = ClickHouseSink(chdb_settings)
    try:
        sink.write(decode_batch([batch("p1", 0), batch("p1", 2), batch("p2", 1)], "runstream.").rows, token="t1")
        found = sink.stored_records(
            {("p1", 0), ("p1", 1), ("p1", 2), ("p2", 1), ("p2", 2), ("p3", 0)}, {("t", "p", "r1")}
        )
        assert sink.stored_records({("p1", 0)}, {("t", "p", "other-run")}) == []
    finally:
        sink.close()
    # Each with its partition (January 1970) and the token it was inserted with.
    assert sorted(found) == [
        StoredRows("p1", 0, 197001, "metrics:t1", 1),
        StoredRows("p1", 2, 197001, "metrics:t1", 1),
        StoredRows("p2", 1, 197001, "metrics:t1", 1),
    ]


def test_running_runs_read_back_the_runs_rows_wrote(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    alive = RunInfo(
        run_id="alive",
        team="t",
        project="p",
        user="ada",
        name="n",
        group="g",
        host="h",
        git_commit="c",
        tags={"k": "v"},
        started_at_ms=1_700_000_000_000,
        world_size=4,
    )
    quiet = RunInfo(run_id="quiet", team="t", project="p", started_at_ms=1_700_000_000_000)
    done = RunInfo(run_id="done", team="t", project="p", started_at_ms=1_700_000_000_000)
    events = [
        RunStart(run=alive),
        Heartbeat(run=alive, ts_ms=1_700_000_005_000, step=11),
        RunStart(run=quiet),
        RunStart(run=done),
        RunEnd(run=done, status=RunStatus.FINISHED, ended_at_ms=1_700_000_009_000),
    ]
    sink = ClickHouseSink(chdb_settings)
    try:
        sink.write(to_rows(events, {("t", "p", "alive"): LiveFields(1_700_000_006_000, 11)}), token=None)
        running = sorted(sink.running_runs(), key=lambda r: r.info.run_id)
    finally:
        sink.close()
    # The last heartbeat as the worker received it, and the version of the newest row; a run never
    # heard from since its start has no heartbeat.
    assert running == [
        RunningRun(alive, 1_700_000_006_000, 11, 1_700_000_005_000),
        RunningRun(quiet, None, -1, 1_700_000_000_000),
    ]


T0 = 1_700_000_000_000
DAY = 86_400_000


def spread_over_days(days: int, seq: int = 0) -> RowBatch:
    """One point a day for ``days`` days (one metric point and two GPU readings each)."""
    rows = RowBatch()
    ts = [T0 + i * DAY for i in range(days)]
    rows.add_metrics(
        MetricBatch(
            producer_id="offline",
            seq=seq,
            run_id="old-run",
            team="t",
            project="p",
            keys=["loss"] * days,
            steps=list(range(days)),
            ts_ms=[T0 + i * 31 * DAY for i in range(days)],  # one a month: as many months as days
            values=[float(i) for i in range(days)],
        )
    )
    rows.add_hardware(
        HardwareBatch(
            producer_id="offline",
            seq=seq + 1,
            run_id="old-run",
            team="t",
            project="p",
            user="ada",
            interval_ms=15_000,
            ts_ms=ts + ts,
            keys=[GPU_UTILIZATION_PERCENT] * (2 * days),
            devices=["gpu0"] * days + ["gpu1"] * days,
            values=[50.0] * (2 * days),
        )
    )
    return rows


def test_a_batch_over_more_partitions_than_one_insert_takes_goes_in_by_partition(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    sink = ClickHouseSink(chdb_settings)
    try:
        assert sink.partition_limit() == 100
        rows = spread_over_days(250)  # 250 months of metrics, 250 days of hardware
        sink.write(rows, token="sync@1")
        sink.write(rows, token="sync@1")  # a retry stores nothing twice
    finally:
        sink.close()
    client = connect(chdb_settings)
    try:
        counts = client.query(
            "SELECT (SELECT count() FROM metrics), (SELECT uniqExact(_partition_id) FROM metrics), "
            "(SELECT count() FROM hardware), (SELECT uniqExact(_partition_id) FROM hardware)"
        ).result_rows
        pieces = {
            table: client.query(
                f"SELECT insert_token, min(_partition_id), max(_partition_id), uniqExact(_partition_id) FROM {table} "
                "GROUP BY insert_token ORDER BY insert_token"
            ).result_rows
            for table in ("metrics", "hardware")
        }
        assert rollup_differences(client) == []
    finally:
        client.close()
    assert counts == [(250, 250, 500, 250)]
    # Pieces of at most 100 whole partitions, each with a token named by its first and last partition.
    for table, found in pieces.items():
        assert [n for *_, n in found] == [100, 100, 50]
        assert [token for token, *_ in found] == [f"{table}:sync@1:{first}-{last}" for _, first, last, _ in found]
    assert pieces["hardware"][0][1:3] == ("20231114", "20240221")


def test_split_by_partition_keeps_batches_within_the_limit_whole() -> None:
    rows = spread_over_days(3)
    assert [name for name, _ in split_by_partition(hardware, rows.hardware, 3)] == [None]
    pieces = list(split_by_partition(hardware, rows.hardware, 2))
    assert [(name, len(piece[0])) for name, piece in pieces] == [("20231114-20231115", 4), ("20231116-20231116", 2)]
    # Rows keep their order within a partition, and every column is cut alike.
    assert pieces[0][1][hardware.TS] == [T0, T0, T0 + DAY, T0 + DAY]
    assert pieces[0][1][hardware.COLUMNS.index("device")] == ["gpu0", "gpu1", "gpu0", "gpu1"]


def test_repair_completes_the_rollups_an_interrupted_insert_left_short(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    client = connect(chdb_settings)
    # A view that fails while the flag is up: the insert fails after the raw part is written.
    client.command("CREATE TABLE fault_flag (up UInt8) ENGINE = Memory")
    client.command("INSERT INTO fault_flag VALUES (1)")
    client.command("CREATE TABLE fault_target (n UInt64) ENGINE = MergeTree ORDER BY n")
    client.command(
        "CREATE MATERIALIZED VIEW fault_view TO fault_target AS "
        "SELECT throwIf((SELECT max(up) FROM fault_flag) = 1, 'view failed') + count() AS n FROM hardware"
    )
    sink = ClickHouseSink(chdb_settings)
    rows = spread_over_days(40)
    rows.metrics = metrics.columns()
    try:
        with pytest.raises(DatabaseError, match="Code: 395"):
            sink.write(rows, token="first@1")
        assert rollup_differences(client) != []  # the raw rows are in, some rollups are not
        client.command("TRUNCATE TABLE fault_flag")
        for _ in range(2):  # a second repair changes nothing
            assert sink.repair("hardware:first@1") == 80
            assert client.query("SELECT count() FROM hardware").result_rows == [(80,)]
            assert rollup_differences(client) == []
        assert sink.repair("metrics:unknown@1") == 0 and sink.repair("runs:x") == 0
    finally:
        sink.close()
        client.close()


def test_an_end_in_the_millisecond_of_a_crash_row_outranks_it(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    info = RunInfo(run_id="r1", team="t", project="p", started_at_ms=T0)
    beat = Heartbeat(run=info, ts_ms=T0 + 5_000, step=3)
    sink = ClickHouseSink(chdb_settings)
    try:
        sink.write(to_rows([RunStart(run=info), beat]), token=None)
        crash = RowBatch()
        crash.runs.append(runs.crashed(info, LiveFields(T0 + 5_000, 3), T0 + 5_000))
        sink.write(crash, token=None)
        sink.write(to_rows([RunEnd(run=info, status=RunStatus.FINISHED, ended_at_ms=T0 + 5_000)]), token=None)
    finally:
        sink.close()
    client = connect(chdb_settings)
    try:
        for table in ("runs FINAL", "run_table"):
            assert client.query(f"SELECT status FROM {table}").result_rows == [("finished",)], table
    finally:
        client.close()
