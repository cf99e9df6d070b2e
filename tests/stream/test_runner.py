"""The runner with a fake sink and a fake dead-letter topic: retry, dead letters, liveness, stats."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

from aiokafka.errors import KafkaConnectionError
from clickhouse_connect.driver.exceptions import DatabaseError

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
from runstream_worker.dead_letters import Letter, LetterTooLargeError
from runstream_worker.decode import RecordId, SourceRecord, StoredRows
from runstream_worker.rows import RowBatch
from runstream_worker.runner import Backoff, Handled, Runner
from runstream_worker.settings import WorkerSettings
from runstream_worker.stats import WorkerStats
from runstream_worker.tables import pipeline_health
from runstream_worker.tables.runs import RunningRun

INFO = RunInfo(run_id="r1", team="t", project="p", started_at_ms=1_000)
FAST = Backoff(first_s=0.001, max_s=0.004)


class FakeSink:
    """Keeps what is written; ``failures`` writes fail first (with ``error``); ``stored`` are the
    records already stored; ``refuse`` holds metric values a write refuses deterministically."""

    def __init__(self, failures: int = 0, stored: set[RecordId] | None = None) -> None:
        self.failures = failures
        self.error: Exception = ConnectionError("clickhouse is away")
        self.refuse: set[float] = set()
        self.stored = stored or set()
        self.running: list[RunningRun] = []
        self.attempts = 0
        self.lookups = 0
        self.repaired: list[str] = []
        self.written: list[tuple[RowBatch, str | None]] = []
        self.timeline: list[str] | None = None
        self.closed = False

    def write(self, rows: RowBatch, token: str | None) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        if self.refuse & set(rows.metrics[6]):
            raise DatabaseError("Code: 321. DB::Exception: Value out of range. (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE)")
        self.written.append((rows, token))
        if self.timeline is not None:
            self.timeline.append("write")

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> Sequence[StoredRows]:
        self.lookups += 1
        return [StoredRows(p, s, 197001, f"metrics:old@{s}", 1_000_000) for p, s in ids & self.stored]

    def repair(self, token: str) -> int:
        self.repaired.append(token)
        return 0

    def running_runs(self) -> Sequence[RunningRun]:
        return self.running

    def close(self) -> None:
        self.closed = True


class FakeDeadLetters:
    def __init__(self, timeline: list[str] | None = None) -> None:
        self.sent: list[Letter] = []
        self.timeline = timeline
        self.failures = 0
        self.max_bytes = 10**9

    async def __call__(self, letter: Letter) -> None:
        await asyncio.sleep(0.01)  # Kafka takes a while to acknowledge
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        if letter.size() > self.max_bytes:
            raise LetterTooLargeError("too large")
        self.sent.append(letter)
        if self.timeline is not None:
            self.timeline.append(f"dead letter {letter.headers['source_offset'].decode()}")

    def reasons(self) -> list[tuple[int, str]]:
        return [(int(x.headers["source_offset"]), x.headers["reason"].decode()) for x in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settings() -> WorkerSettings:
    return WorkerSettings(_env_file=None, topic_prefix="x.", worker_crash_after_s=10)  # type: ignore[call-arg]


def runner(
    sink: FakeSink,
    dead_letters: FakeDeadLetters | None = None,
    stats: WorkerStats | None = None,
    clock: Callable[[], int] = lambda: 1_000,
    dead_letter_max_bytes: int = 1_000_000,
) -> Runner:
    return Runner(
        settings(),
        sink,
        dead_letters or FakeDeadLetters(),
        stats,
        backoff=FAST,
        worker="w-1",
        clock=clock,
        dead_letter_max_bytes=dead_letter_max_bytes,
    )


def points(seq: int, n: int = 3, value: float = 1.0) -> bytes:
    return encode_event(
        MetricBatch(
            producer_id="p1",
            seq=seq,
            run_id="r1",
            team="t",
            project="p",
            keys=["loss"] * n,
            steps=list(range(n)),
            ts_ms=[5] * n,
            values=[value] * n,
        )
    )


def readings(seq: int) -> bytes:
    return encode_event(
        HardwareBatch(
            producer_id="h1",
            seq=seq,
            run_id="r1",
            team="t",
            project="p",
            ts_ms=[5, 5],
            keys=["cpu.percent", "gpu.power_watts"],
            devices=["", "gpu0"],
            values=[1.0, 2.0],
        )
    )


def test_a_failing_sink_is_retried_with_the_same_token_and_no_second_lookup() -> None:
    sink = FakeSink(failures=3)
    records = [SourceRecord("x.metrics", 0, 7, points(0))]

    async def run() -> None:
        work = runner(sink)
        handled = await work.handle(records)
        assert handled.counts["metrics"] == 3
        work.close()

    asyncio.run(run())
    assert (sink.attempts, sink.lookups) == (4, 1)
    ((rows, token),) = sink.written
    assert rows.metrics[4] == [0, 1, 2] and token is not None and token.endswith("@1000")
    assert sink.closed


def test_the_lookup_drops_stored_records_and_repairs_their_recent_tokens_first() -> None:
    sink = FakeSink(stored={("p1", 0), ("p1", 1)})
    records = [
        SourceRecord("x.metrics", 0, 0, points(0)),
        SourceRecord("x.metrics", 0, 1, points(1)),
        SourceRecord("x.metrics", 0, 2, points(2, n=2)),
    ]

    async def run() -> Handled:
        # Stored under tokens made at 0 and 1 ms; it is now 300.001 s after the first.
        work = runner(sink, clock=lambda: 300_001)
        handled = await work.handle(records)
        assert work.stats.totals().replays == 2
        return handled

    handled = asyncio.run(run())
    assert (handled.replays, handled.counts["metrics"]) == (2, 2)
    assert sink.written[0][0].metrics[8] == [2, 2]
    # The one within worker_repair_window_s (300 s) is repaired; ClickHouse may have forgotten the other.
    assert sink.repaired == ["metrics:old@1"]


def test_dead_letters_are_on_their_topic_before_the_batch_completes() -> None:
    timeline: list[str] = []
    sink = FakeSink()
    sink.timeline = timeline
    dead_letters = FakeDeadLetters(timeline)
    records = [
        SourceRecord("x.metrics", 0, 0, b"not an event"),
        SourceRecord("x.metrics", 0, 1, points(0)),
        SourceRecord("x.metrics", 0, 2, None),
    ]

    async def run() -> None:
        work = runner(sink, dead_letters)
        await work.handle(records)
        timeline.append("batch done")

    asyncio.run(run())
    assert timeline == ["dead letter 0", "dead letter 2", "write", "batch done"]
    assert [(offset, reason.split(":")[0]) for offset, reason in dead_letters.reasons()] == [
        (0, "invalid event"),
        (2, "empty record value"),
    ]


def test_a_record_clickhouse_refuses_is_isolated_and_dead_lettered_while_the_rest_is_stored() -> None:
    sink = FakeSink()
    sink.refuse = {666.0}
    dead_letters = FakeDeadLetters()
    records = [SourceRecord("x.metrics", 0, i, points(i, value=666.0 if i == 5 else float(i))) for i in range(8)]

    async def run() -> Handled:
        return await runner(sink, dead_letters).handle(records)

    handled = asyncio.run(run())
    stored = sorted(seq for rows, _ in sink.written for seq in set(rows.metrics[8]))
    assert stored == [0, 1, 2, 3, 4, 6, 7]
    assert handled.counts["metrics"] == 7 * 3
    ((offset, reason),) = dead_letters.reasons()
    assert offset == 5
    assert reason.startswith("clickhouse refused the record: Code: 321 (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE): DB::")
    # The take 3 times; its halves once each ([0-3] stored, [4-7] split, [4-5] split, [6-7] stored);
    # [4] stored; [5] 3 times.
    assert sink.attempts == 3 + 2 + 2 + 1 + 3
    # Every piece carries a token of its own.
    assert len({token for _, token in sink.written}) == len(sink.written)


def test_a_single_refused_record_is_tried_worker_insert_tries_times() -> None:
    sink = FakeSink()
    sink.refuse = {666.0}
    dead_letters = FakeDeadLetters()

    async def run() -> None:
        await runner(sink, dead_letters).handle([SourceRecord("x.metrics", 0, 0, points(0, value=666.0))])

    asyncio.run(run())
    assert (sink.attempts, len(sink.written), len(dead_letters.sent)) == (3, 0, 1)


def test_transient_and_deterministic_failures_are_told_apart_by_code() -> None:
    sink = FakeSink(failures=5)
    sink.error = DatabaseError("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)")
    dead_letters = FakeDeadLetters()

    async def run() -> None:
        await runner(sink, dead_letters).handle([SourceRecord("x.metrics", 0, 0, points(0))])

    asyncio.run(run())
    assert (sink.attempts, len(sink.written), dead_letters.sent) == (6, 1, [])


def test_an_event_whose_rows_cannot_be_built_is_a_dead_letter_at_once() -> None:
    sink = FakeSink()
    dead_letters = FakeDeadLetters()
    start = RunStart(run=INFO, params={"lr": "0.1"})
    records = [SourceRecord("x.runs", 0, 0, encode_event(start)), SourceRecord("x.runs", 0, 1, b"")]

    async def run() -> None:
        await runner(sink, dead_letters).handle(records)

    with patch("runstream_worker.tables.params.rows", side_effect=ValueError("year 287396 is out of range")):
        asyncio.run(run())
    assert dead_letters.reasons() == [
        (1, "empty record value"),
        (0, "could not build rows: ValueError: year 287396 is out of range"),
    ]
    assert sink.written == []


def test_dead_letters_that_fail_are_retried_and_oversize_ones_are_cut() -> None:
    sink = FakeSink()
    dead_letters = FakeDeadLetters()
    dead_letters.failures = 2
    dead_letters.max_bytes = 40_000
    big = b"\xc1" * 100_000

    async def run() -> None:
        await runner(sink, dead_letters, dead_letter_max_bytes=90_000).handle([SourceRecord("x.metrics", 0, 3, big)])

    asyncio.run(run())
    ((sent),) = dead_letters.sent
    assert sent.size() <= 40_000 and big.startswith(sent.value) and len(sent.value) > 20_000
    assert sent.headers["original_size"] == b"100000"
    assert "dead letter cut to its first" in sent.headers["reason"].decode()


def test_a_batch_of_bad_records_only_writes_nothing() -> None:
    sink = FakeSink()
    dead_letters = FakeDeadLetters()

    async def run() -> None:
        await runner(sink, dead_letters).handle([SourceRecord("x.runs", 1, 4, b"\xc1")])

    asyncio.run(run())
    assert sink.attempts == 0 and len(dead_letters.sent) == 1


class WorkerClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def test_runs_whose_heartbeats_stopped_are_written_crashed_once_seeded_from_storage() -> None:
    sink = FakeSink()
    seeded = RunInfo(run_id="r0", team="t", project="p", started_at_ms=500)
    sink.running = [RunningRun(seeded, 900, 4, 700)]
    clock = WorkerClock(1_000)

    async def run() -> Runner:
        work = runner(sink, clock=clock)
        await work.handle([SourceRecord("x.runs", 0, 0, encode_event(RunStart(run=INFO)))])
        clock.now_ms = 2_000
        await work.handle([SourceRecord("x.runs", 0, 1, encode_event(Heartbeat(run=INFO, ts_ms=1_500, step=3)))])
        await work.check_liveness(now_ms=50_000, runs_backlog=2)  # heartbeats may wait unread: no verdict
        assert len(sink.written) == 2
        await work.check_liveness(now_ms=11_000)
        await work.check_liveness(now_ms=12_000)
        await work.check_liveness(now_ms=13_000)  # nothing new
        return work

    work = asyncio.run(run())
    crashed = [rows.runs for rows, _ in sink.written[2:]]
    # Heartbeat times are the worker's when they arrived; a crash row is versioned 1 ms after the
    # newest row of the run (the producer's clock), so a later end outranks it.
    assert [[(row[2], row[9], row[12], row[15], row[16]) for row in rows] for rows in crashed] == [
        [("r0", "crashed", datetime.fromtimestamp(0.701, UTC), datetime.fromtimestamp(0.9, UTC), 4)],
        [("r1", "crashed", datetime.fromtimestamp(1.501, UTC), datetime.fromtimestamp(2, UTC), 3)],
    ]
    assert [token for _, token in sink.written[2:]] == [None, None]
    assert work.stats.totals().crashed_runs == 2


def test_a_skewed_producer_clock_neither_crashes_a_live_run_nor_outranks_its_end() -> None:
    sink = FakeSink()
    skew = -600_000  # the producer's clock is 10 minutes behind the worker's
    clock = WorkerClock(1_700_000_000_000)
    info = RunInfo(run_id="r1", team="t", project="p", started_at_ms=clock.now_ms + skew)

    async def run() -> None:
        work = runner(sink, clock=clock)
        await work.handle([SourceRecord("x.runs", 0, 0, encode_event(RunStart(run=info)))])
        for offset in range(1, 5):
            clock.now_ms += 5_000
            beat = Heartbeat(run=info, ts_ms=clock.now_ms + skew, step=offset)
            await work.handle([SourceRecord("x.runs", 0, offset, encode_event(beat))])
            await work.check_liveness(now_ms=clock.now_ms)
        assert work.stats.totals().crashed_runs == 0
        clock.now_ms += 10_000  # heartbeats stopped
        await work.check_liveness(now_ms=clock.now_ms)
        assert work.stats.totals().crashed_runs == 1
        end = RunEnd(run=info, status=RunStatus.FINISHED, ended_at_ms=clock.now_ms + skew - 10_000)
        await work.handle([SourceRecord("x.runs", 0, 5, encode_event(end))])

    asyncio.run(run())
    rows = [row for batch, _ in sink.written for row in batch.runs]
    statuses = [(row[9], row[12]) for row in rows]
    assert [status for status, _ in statuses] == ["running"] * 5 + ["crashed", "finished"]
    last_beat, crash, end = (version for _, version in statuses[4:])
    # An end at the millisecond of the last heartbeat ties with the crash row, which it wins: it is
    # inserted later, and "finished" sorts after "crashed" (tests/stream/test_sink.py, real engine).
    assert last_beat < crash == end
    # The live figures are the worker's: the last heartbeat arrived 10 s before the check.
    assert rows[5][15] == datetime.fromtimestamp((clock.now_ms - 10_000) / 1000, UTC)


def test_a_failed_read_of_running_runs_is_tried_again_at_the_next_check() -> None:
    class Unreadable(FakeSink):
        reads = 0

        def running_runs(self) -> Sequence[RunningRun]:
            self.reads += 1
            if self.reads == 1:
                raise ConnectionError("clickhouse is away")
            return [RunningRun(INFO, 1_000, 0, 1_000)]

    sink = Unreadable()

    async def run() -> None:
        work = runner(sink)
        await work.check_liveness(now_ms=60_000)
        assert sink.written == []
        await work.check_liveness(now_ms=60_000)

    asyncio.run(run())
    assert sink.reads == 2
    assert [row[9] for row in sink.written[0][0].runs] == ["crashed"]


def prometheus(stats: WorkerStats, name: str, **labels: str) -> float:
    value = stats.registry().get_sample_value(name, labels)
    assert value is not None, name
    return value


def health_row(sink: FakeSink) -> dict[str, Any]:
    rows, token = sink.written[-1]
    assert token is None
    (row,) = rows.health
    return dict(zip(pipeline_health.COLUMNS, row, strict=True))


def test_stats_are_counted_once_and_equal_in_prometheus_and_pipeline_health() -> None:
    clock = Clock()
    stats = WorkerStats(clock)
    sink = FakeSink(stored={("p1", 1)})
    batches = [
        [
            SourceRecord("x.metrics", 0, 0, points(0, n=4)),
            SourceRecord("x.metrics", 0, 1, points(1)),  # already stored: a replay
            SourceRecord("x.metrics", 1, 0, b"junk"),  # a dead letter
            SourceRecord("x.metrics", 1, 1, points(0, n=4)),  # a repeat within the batch
        ],
        [SourceRecord("x.hardware", 0, 0, readings(0))],
        [SourceRecord("x.runs", 0, 0, encode_event(RunStart(run=INFO, params={"lr": "0.1"})))],
    ]
    ends = {("x.metrics", 0): (5, 0), ("x.metrics", 1): (2, 0), ("x.hardware", 0): (1, 0), ("x.runs", 0): (1, 0)}

    async def run() -> None:
        work = runner(sink, stats=stats)
        for batch in batches:
            await work.handle(batch)
        await work.check_liveness(now_ms=1_000_000)  # r1 stopped beating long ago
        clock.now += 10.0
        await work.write_health(ends, now_ms=1_000_000)
        clock.now += 5.0
        await work.write_health(ends, now_ms=1_005_000)

    asyncio.run(run())
    first = sink.written[-2][0].health[0]
    assert dict(zip(pipeline_health.COLUMNS, first, strict=True)) | {"batch_p50_ms": 0, "batch_max_ms": 0} == {
        "ts": 1_000_000,
        "worker": "w-1",
        "interval_s": 10.0,
        "records": 6,
        "points": 4,
        "hardware_readings": 2,
        "dead_letters": 1,
        "replays": 2,
        "batches": 3,
        "crashed_runs": 1,
        "consumer_lag": 3,  # x.metrics[0] ends at 5, two records handled
        "batch_p50_ms": 0,
        "batch_max_ms": 0,
    }
    # The second interval saw nothing new; Prometheus keeps the totals.
    second = health_row(sink)
    assert (second["interval_s"], second["records"], second["points"], second["batches"]) == (5.0, 0, 0, 0)
    assert prometheus(stats, "runstream_worker_records_total", topic="x.metrics") == 4
    assert prometheus(stats, "runstream_worker_records_total", topic="x.hardware") == 1
    assert prometheus(stats, "runstream_worker_records_total", topic="x.runs") == 1
    assert prometheus(stats, "runstream_worker_rows_total", table="metrics") == first[4]
    assert prometheus(stats, "runstream_worker_rows_total", table="hardware") == first[5]
    assert prometheus(stats, "runstream_worker_rows_total", table="runs") == 1
    assert prometheus(stats, "runstream_worker_rows_total", table="params") == 1
    assert prometheus(stats, "runstream_worker_dead_letters_total") == first[6]
    assert prometheus(stats, "runstream_worker_replays_total") == first[7]
    assert prometheus(stats, "runstream_worker_batch_seconds_count") == first[8]
    assert prometheus(stats, "runstream_worker_batch_seconds_bucket", le="+Inf") == first[8]
    assert prometheus(stats, "runstream_worker_crashed_runs_total") == first[9]
    assert prometheus(stats, "runstream_worker_consumer_lag", topic="x.metrics", partition="0") == 3
    assert prometheus(stats, "runstream_worker_consumer_lag", topic="x.metrics", partition="1") == 0
    # The same batch times: the interval's median and longest, the histogram's sum.
    assert 0 < first[11] <= first[12] <= prometheus(stats, "runstream_worker_batch_seconds_sum") * 1000
    totals = stats.totals()
    assert (totals.records, totals.points, totals.rejected, totals.batches) == (6, 4, 1, 3)
