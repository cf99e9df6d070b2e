"""The runner on the real embedded engine when ClickHouse refuses, fails half-way, or meets reused
offsets: exact rows, every rollup equal to its raw aggregate, refused records as dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest
from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.events import (
    HardwareBatch,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    encode_event,
)
from runstream_core.hardware_keys import GPU_UTILIZATION_PERCENT
from runstream_worker.dead_letters import Letter
from runstream_worker.decode import SourceRecord
from runstream_worker.migrate import migrate
from runstream_worker.rows import RowBatch
from runstream_worker.runner import Backoff, Runner
from runstream_worker.sink import ClickHouseSink
from tests.fixtures.rollups import rollup_differences
from tests.fixtures.settings import StackSettings as Settings

T0 = 1_700_000_000_000
DAY = 86_400_000
INFO = RunInfo(run_id="r1", team="t", project="p", user="ada", started_at_ms=T0)


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[Letter] = []

    async def __call__(self, letter: Letter) -> None:
        self.sent.append(letter)

    def reasons(self) -> dict[int, str]:
        return {int(x.headers["source_offset"]): x.headers["reason"].decode() for x in self.sent}


@pytest.fixture
def store(chdb_settings: Settings) -> Iterator[Client]:
    migrate(chdb_settings)
    client = connect(chdb_settings)
    yield client
    client.close()


def metric_record(
    offset: int, seq: int, *, producer: str = "p1", n: int = 50, value: float | None = None
) -> SourceRecord:
    batch = MetricBatch(
        producer_id=producer,
        seq=seq,
        run_id="r1",
        team="t",
        project="p",
        keys=["loss", "acc"] * (n // 2),
        steps=[seq * n + i // 2 for i in range(n)],
        ts_ms=[T0 + seq * 1_000 + i for i in range(n)],
        values=[value if value is not None else float(seq * n + i) for i in range(n)],
    )
    return SourceRecord("runstream.metrics", 0, offset, encode_event(batch), b"r1")


def hardware_record(offset: int, seq: int, *, days: int = 1) -> SourceRecord:
    ts = [T0 + seq * 10_000 + d * DAY for d in range(days)]
    batch = HardwareBatch(
        producer_id="h1",
        seq=seq,
        run_id="r1",
        team="t",
        project="p",
        user="ada",
        interval_ms=10_000,
        ts_ms=ts + ts,
        keys=[GPU_UTILIZATION_PERCENT] * (2 * days),
        devices=["gpu0"] * days + ["gpu1"] * days,
        values=[25.0] * days + [75.0] * days,
    )
    return SourceRecord("runstream.hardware", 0, offset, encode_event(batch), b"r1")


def run_records() -> list[SourceRecord]:
    events = [
        RunStart(run=INFO, params={"lr": "0.1"}, producer_id="p1", seq=1000),
        RunEnd(run=INFO, status=RunStatus.FINISHED, ended_at_ms=T0 + 60_000, producer_id="p1", seq=1001),
    ]
    return [SourceRecord("runstream.runs", 0, i, encode_event(e), b"r1") for i, e in enumerate(events)]


def handle_all(runner: Runner, *takes: list[SourceRecord]) -> None:
    async def run() -> None:
        for take in takes:
            await runner.handle(take)
        runner.close()

    asyncio.run(run())


def runner_for(settings: Settings, sink: ClickHouseSink, dead_letters: DeadLetters) -> Runner:
    return Runner(settings, sink, dead_letters, backoff=Backoff(first_s=0.01, max_s=0.05), worker="w")


class FailsOnce(ClickHouseSink):
    """A sink whose store has a view that fails the first insert into ``metrics`` after the raw part
    is written (the view throws while a flag is up); the flag is lowered once that has happened."""

    def __init__(self, settings: Settings, client: Client) -> None:
        super().__init__(settings)
        self.client = client
        self.failures = 0
        self.lookups = 0
        client.command("CREATE TABLE fault_flag (up UInt8) ENGINE = Memory")
        client.command("INSERT INTO fault_flag VALUES (1)")
        client.command("CREATE TABLE fault_target (n UInt64) ENGINE = MergeTree ORDER BY n")
        client.command(
            "CREATE MATERIALIZED VIEW fault_view TO fault_target AS "
            "SELECT throwIf((SELECT max(up) FROM fault_flag) = 1, 'view failed') + count() AS n FROM metrics"
        )

    def stored_records(self, ids: set[tuple[str, int]], run_keys: set[tuple[str, str, str]]) -> list:  # type: ignore[type-arg]
        self.lookups += 1
        return super().stored_records(ids, run_keys)

    def write(self, rows: RowBatch, token: str | None) -> None:
        try:
            super().write(rows, token)
        except Exception:
            self.failures += 1
            self.client.command("TRUNCATE TABLE fault_flag")
            raise


def test_a_retry_after_a_view_failed_completes_every_rollup(chdb_settings: Settings, store: Client) -> None:
    sink = FailsOnce(chdb_settings, store)
    dead_letters = DeadLetters()
    takes = [[metric_record(i, i) for i in range(10)], [hardware_record(i, i) for i in range(5)], run_records()]
    handle_all(runner_for(chdb_settings, sink, dead_letters), *takes)
    assert sink.failures == 1
    assert sink.lookups == 2  # one per take of points, none for the retry
    assert store.query("SELECT count() FROM metrics").result_rows == [(500,)]
    assert store.query("SELECT count() FROM hardware").result_rows == [(10,)]
    assert rollup_differences(store) == []
    assert store.query("SELECT sum(points) FROM metric_summary").result_rows == [(500,)]
    assert store.query("SELECT count() FROM ingested_records FINAL").result_rows == [(15,)]
    assert dead_letters.sent == []


def test_values_beyond_their_columns_are_dead_letters_with_the_bound_they_break(
    chdb_settings: Settings, store: Client
) -> None:
    def raw(event: MetricBatch | HardwareBatch | RunStart, **changes: object) -> bytes:
        return msgspec.msgpack.encode({**msgspec.to_builtins(event), **changes})

    good = MetricBatch(
        producer_id="p1", seq=0, run_id="r1", team="t", project="p", keys=["a"], steps=[0], ts_ms=[T0], values=[1.0]
    )
    readings = HardwareBatch(
        producer_id="h1",
        seq=0,
        run_id="r1",
        team="t",
        project="p",
        ts_ms=[T0],
        keys=["cpu.percent"],
        devices=[""],
        values=[1.0],
    )
    records = [
        SourceRecord("runstream.metrics", 0, 0, raw(good, steps=[2**63])),  # Int64 overflow
        SourceRecord("runstream.metrics", 0, 1, raw(good, seq=1)),
        SourceRecord("runstream.hardware", 0, 0, raw(readings, interval_ms=2**32)),  # UInt32 overflow
        SourceRecord(
            "runstream.runs", 0, 0, raw(RunStart(run=INFO), run={**msgspec.to_builtins(INFO), "started_at_ms": 2**53})
        ),
    ]
    dead_letters = DeadLetters()
    handle_all(
        runner_for(chdb_settings, ClickHouseSink(chdb_settings), dead_letters), records[:2], records[2:3], records[3:]
    )
    reasons = sorted(letter.headers["reason"].decode() for letter in dead_letters.sent)
    assert reasons == [
        "invalid event: Expected `int` <= 10413791999999 - at `$.run.started_at_ms`",
        "invalid event: Expected `int` <= 86400000 - at `$.interval_ms`",
        "invalid event: Expected `int` <= 9223372036854775807 - at `$.steps[0]`",
    ]
    assert store.query("SELECT seq FROM metrics").result_rows == [(1,)]


def test_a_record_clickhouse_refuses_is_a_dead_letter_and_the_rest_is_stored(
    chdb_settings: Settings, store: Client
) -> None:
    # The store refuses one value (as a server's constraint might): before anything is written.
    store.command("ALTER TABLE metrics ADD CONSTRAINT no_666 CHECK value != 666")
    take = [metric_record(i, i, value=666.0 if i == 6 else None) for i in range(10)]
    dead_letters = DeadLetters()
    handle_all(runner_for(chdb_settings, ClickHouseSink(chdb_settings), dead_letters), take, run_records())
    ((offset, reason),) = dead_letters.reasons().items()
    assert offset == 6
    assert reason.startswith("clickhouse refused the record: Code: 469 (VIOLATED_CONSTRAINT): DB::Exception: ")
    assert "no_666" in reason
    seqs = store.query("SELECT DISTINCT seq FROM metrics ORDER BY seq").result_rows
    assert [seq for (seq,) in seqs] == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    assert store.query("SELECT count() FROM metrics").result_rows == [(450,)]
    assert rollup_differences(store) == []


def test_a_batch_over_many_partitions_is_stored_whole(chdb_settings: Settings, store: Client) -> None:
    # An offline run synced late: a year of hardware readings (one record) and 101 monthly points.
    months = MetricBatch(
        producer_id="p1",
        seq=0,
        run_id="r1",
        team="t",
        project="p",
        keys=["loss"] * 101,
        steps=list(range(101)),
        ts_ms=[T0 + i * 31 * DAY for i in range(101)],
        values=[float(i) for i in range(101)],
    )
    takes = [
        [SourceRecord("runstream.metrics", 0, 0, encode_event(months))],
        [hardware_record(0, 0, days=365)],
        run_records(),
    ]
    dead_letters = DeadLetters()
    handle_all(runner_for(chdb_settings, ClickHouseSink(chdb_settings), dead_letters), *takes)
    assert dead_letters.sent == []
    assert store.query("SELECT count(), uniqExact(_partition_id) FROM metrics").result_rows == [(101, 101)]
    assert store.query("SELECT count(), uniqExact(_partition_id) FROM hardware").result_rows == [(730, 365)]
    assert rollup_differences(store) == []


def test_new_records_at_the_offsets_of_a_deleted_topic_are_stored(chdb_settings: Settings, store: Client) -> None:
    # The same topic, partition and offsets, before and after the topic was created again.
    before = [metric_record(i, i, producer="job-a") for i in range(5)]
    after = [metric_record(i, i, producer="job-b") for i in range(5)]
    dead_letters = DeadLetters()
    handle_all(runner_for(chdb_settings, ClickHouseSink(chdb_settings), dead_letters), before, after)
    assert store.query(
        "SELECT producer_id, count() FROM metrics GROUP BY producer_id ORDER BY producer_id"
    ).result_rows == [("job-a", 250), ("job-b", 250)]
    assert rollup_differences(store) == []
