"""The ClickHouse sink on the real embedded engine: exact rows, and retried batches stored once."""

from __future__ import annotations

from runstream_core.clickhouse import connect
from runstream_core.events import Heartbeat, MetricBatch, RunEnd, RunInfo, RunStart, RunStatus, encode_event
from runstream_worker.decode import SourceRecord, decode_batch
from runstream_worker.migrate import migrate
from runstream_worker.rows import to_rows
from runstream_worker.sink import ClickHouseSink
from runstream_worker.tables.runs import LiveFields, RunningRun
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
        assert sink.stored_records({("p1", 0)}, {("t", "p", "other-run")}) == set()
    finally:
        sink.close()
    assert found == {("p1", 0), ("p1", 2), ("p2", 1)}


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
        sink.write(to_rows(events, {"alive": LiveFields(1_700_000_005_000, 11)}), token=None)
        running = sorted(sink.running_runs(), key=lambda r: r.info.run_id)
    finally:
        sink.close()
    # A run never heard from since its start counts from its last update.
    assert running == [RunningRun(alive, 1_700_000_005_000, 11), RunningRun(quiet, 1_700_000_000_000, -1)]
