"""The runner with a fake sink and a fake dead-letter topic: retry, dead letters, liveness, stats."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from runstream_core.events import HardwareBatch, Heartbeat, MetricBatch, RunInfo, RunStart, encode_event
from runstream_worker.decode import RecordId, Rejected, SourceRecord
from runstream_worker.rows import RowBatch
from runstream_worker.runner import Backoff, Runner
from runstream_worker.settings import WorkerSettings
from runstream_worker.stats import WorkerStats
from runstream_worker.tables import pipeline_health
from runstream_worker.tables.runs import RunningRun

INFO = RunInfo(run_id="r1", team="t", project="p", started_at_ms=1_000)
FAST = Backoff(first_s=0.001, max_s=0.004)


class FakeSink:
    """Keeps what is written; ``failures`` writes fail first; ``stored`` are the records already stored."""

    def __init__(self, failures: int = 0, stored: set[RecordId] | None = None) -> None:
        self.failures = failures
        self.stored = stored or set()
        self.running: list[RunningRun] = []
        self.attempts = 0
        self.written: list[tuple[RowBatch, str | None]] = []
        self.timeline: list[str] | None = None
        self.closed = False

    def write(self, rows: RowBatch, token: str | None) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("clickhouse is away")
        self.written.append((rows, token))
        if self.timeline is not None:
            self.timeline.append("write")

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> set[RecordId]:
        return ids & self.stored

    def running_runs(self) -> Sequence[RunningRun]:
        return self.running

    def close(self) -> None:
        self.closed = True


class FakeDeadLetters:
    def __init__(self, timeline: list[str] | None = None) -> None:
        self.sent: list[Rejected] = []
        self.timeline = timeline

    async def __call__(self, rejected: Rejected) -> None:
        await asyncio.sleep(0.01)  # Kafka takes a while to acknowledge
        self.sent.append(rejected)
        if self.timeline is not None:
            self.timeline.append(f"dead letter {rejected.record.offset}")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settings() -> WorkerSettings:
    return WorkerSettings(_env_file=None, topic_prefix="x.", worker_crash_after_s=10)  # type: ignore[call-arg]


def runner(sink: FakeSink, dead_letters: FakeDeadLetters | None = None, stats: WorkerStats | None = None) -> Runner:
    return Runner(settings(), sink, dead_letters or FakeDeadLetters(), stats, backoff=FAST, worker="w-1")


def points(seq: int, n: int = 3) -> bytes:
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
            values=[1.0] * n,
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


def test_a_failing_sink_is_retried_until_it_takes_the_batch() -> None:
    sink = FakeSink(failures=3)
    records = [SourceRecord("x.metrics", 0, 7, points(0))]

    async def run() -> None:
        work = runner(sink)
        decoded = await work.handle(records)
        assert decoded.rows.metric_points == 3
        work.close()

    asyncio.run(run())
    assert sink.attempts == 4
    ((rows, token),) = sink.written
    assert rows.metrics[4] == [0, 1, 2] and token is not None
    assert sink.closed


def test_a_retry_drops_what_the_failed_attempt_stored() -> None:
    sink = FakeSink(stored={("p1", 0)})
    records = [SourceRecord("x.metrics", 0, 0, points(0)), SourceRecord("x.metrics", 0, 1, points(1, n=2))]

    async def run() -> RowBatch:
        work = runner(sink)
        decoded = await work.handle(records)
        assert decoded.replays == 1
        assert work.stats.totals().replays == 1
        return decoded.rows

    rows = asyncio.run(run())
    assert rows.metric_points == 2
    assert sink.written[0][0] is rows


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
    assert [(r.record.offset, r.reason.split(":")[0]) for r in dead_letters.sent] == [
        (0, "invalid event"),
        (2, "empty record value"),
    ]


def test_a_batch_of_bad_records_only_writes_nothing() -> None:
    sink = FakeSink()
    dead_letters = FakeDeadLetters()

    async def run() -> None:
        await runner(sink, dead_letters).handle([SourceRecord("x.runs", 1, 4, b"\xc1")])

    asyncio.run(run())
    assert sink.attempts == 0 and len(dead_letters.sent) == 1


def test_runs_whose_heartbeats_stopped_are_written_crashed_once_seeded_from_storage() -> None:
    sink = FakeSink()
    seeded = RunInfo(run_id="r0", team="t", project="p", started_at_ms=500)
    sink.running = [RunningRun(seeded, 900, 4)]

    async def run() -> Runner:
        work = runner(sink)
        await work.handle([SourceRecord("x.runs", 0, 0, encode_event(RunStart(run=INFO)))])
        await work.handle([SourceRecord("x.runs", 0, 1, encode_event(Heartbeat(run=INFO, ts_ms=2_000, step=3)))])
        await work.check_liveness(now_ms=50_000, runs_backlog=2)  # heartbeats may wait unread: no verdict
        assert len(sink.written) == 2
        await work.check_liveness(now_ms=11_000)
        await work.check_liveness(now_ms=12_000)
        await work.check_liveness(now_ms=13_000)  # nothing new
        return work

    work = asyncio.run(run())
    crashed = [rows.runs for rows, _ in sink.written[2:]]
    assert [[(row[2], row[9], row[12], row[15], row[16]) for row in rows] for rows in crashed] == [
        [("r0", "crashed", datetime.fromtimestamp(11, UTC), datetime.fromtimestamp(0.9, UTC), 4)],
        [("r1", "crashed", datetime.fromtimestamp(12, UTC), datetime.fromtimestamp(2, UTC), 3)],
    ]
    assert [token for _, token in sink.written[2:]] == [None, None]
    assert work.stats.totals().crashed_runs == 2


def test_a_failed_read_of_running_runs_is_tried_again_at_the_next_check() -> None:
    class Unreadable(FakeSink):
        reads = 0

        def running_runs(self) -> Sequence[RunningRun]:
            self.reads += 1
            if self.reads == 1:
                raise ConnectionError("clickhouse is away")
            return [RunningRun(INFO, 1_000, 0)]

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
