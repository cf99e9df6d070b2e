"""What the worker fault tests share: a workload of known records sent straight to the topics with
kafka-python, the dead letters read back, and the final check of raw rows and every rollup."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from runstream_core.events import (
    Event,
    HardwareBatch,
    HardwareColumns,
    MetricBatch,
    MetricColumns,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    encode_event,
)
from runstream_core.hardware_keys import CPU_PERCENT, GPU_UTILIZATION_PERCENT
from runstream_core.topics import Topics
from tests.fixtures.rollups import rollup_differences
from tests.fixtures.settings import StackSettings as Settings

T0 = 1_700_000_000_000
DAY_MS = 86_400_000


@dataclass
class Workload:
    """One finished run's records: a start with params, metric and hardware batches, an end."""

    run_id: str
    team: str = "vision"
    project: str = "faults"
    batches: int = 20
    points: int = 100
    """Points per metric batch (two keys)."""
    samples: int = 10
    """Hardware batches (three readings each)."""
    marker_at: int | None = None
    """Index of the metric batch whose keys include ``MARKER``."""
    producer_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    t0: int = T0

    @property
    def info(self) -> RunInfo:
        return RunInfo(run_id=self.run_id, team=self.team, project=self.project, user="ada", started_at_ms=self.t0)

    def metric_batch(self, index: int) -> MetricBatch:
        keys = [MARKER if index == self.marker_at and i % 2 else ("loss", "acc")[i % 2] for i in range(self.points)]
        first = index * self.points // 2
        return MetricBatch(
            producer_id=self.producer_id,
            seq=1 + index,
            run_id=self.run_id,
            team=self.team,
            project=self.project,
            keys=keys,
            steps=[first + i // 2 for i in range(self.points)],
            ts_ms=[self.t0 + (first + i // 2) * 10 for i in range(self.points)],
            values=[(first + i // 2) * 0.5 + i % 2 for i in range(self.points)],
        )

    def hardware_batch(self, index: int) -> HardwareBatch:
        ts = self.t0 + index * 15_000
        return HardwareBatch(
            producer_id=self.producer_id,
            seq=1 + self.batches + index,
            run_id=self.run_id,
            team=self.team,
            project=self.project,
            host="node-1",
            user="ada",
            interval_ms=15_000,
            ts_ms=[ts, ts, ts],
            keys=[GPU_UTILIZATION_PERCENT, GPU_UTILIZATION_PERCENT, CPU_PERCENT],
            devices=["gpu0", "gpu1", ""],
            values=[float(index % 5) * 20, 100.0, 50.0],
        )

    def start(self) -> RunStart:
        return RunStart(run=self.info, params={"lr": "0.1", "seed": "7"}, producer_id=self.producer_id, seq=0)

    def end(self) -> RunEnd:
        last = self.batches * self.points // 2 - 1
        end_ms = self.t0 + 3_600_000
        seq = 1 + self.batches + self.samples
        return RunEnd(
            run=self.info,
            status=RunStatus.FINISHED,
            ended_at_ms=end_ms,
            step=last,
            producer_id=self.producer_id,
            seq=seq,
        )

    def events(self) -> list[Event]:
        """Every event, in the order a job sends them (points and readings interleaved)."""
        body: list[Event] = [self.metric_batch(i) for i in range(self.batches)]
        for i in range(self.samples):
            body.insert(min(len(body), (i + 1) * len(body) // (self.samples + 1) + i), self.hardware_batch(i))
        return [self.start(), *body, self.end()]

    @property
    def metric_points(self) -> int:
        return self.batches * self.points

    @property
    def readings(self) -> int:
        return self.samples * 3


MARKER = "fault.marker"


class Feed:
    """A kafka-python producer onto the pipeline's topics (records as bytes, sent as they are)."""

    def __init__(self, settings: Settings, **config: object) -> None:
        self.topics = Topics(settings.topic_prefix)
        self._producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **config)

    def topic_of(self, event: Event) -> str:
        if isinstance(event, MetricBatch | MetricColumns):
            return self.topics.metrics
        if isinstance(event, HardwareBatch | HardwareColumns):
            return self.topics.hardware
        return self.topics.runs

    def send(self, topic: str, value: bytes, key: bytes | None = b"run") -> tuple[int, int]:
        """Send one record as it is; returns its (partition, offset)."""
        sent = self._producer.send(topic, key=key, value=value).get(timeout=60)
        return sent.partition, sent.offset

    def events(self, events: Iterable[Event]) -> None:
        for event in events:
            run_id = (
                event.run_id
                if isinstance(event, (MetricBatch, HardwareBatch, MetricColumns, HardwareColumns))
                else event.run.run_id
            )
            self._producer.send(self.topic_of(event), key=run_id.encode(), value=encode_event(event))
        self._producer.flush(timeout=60)

    def close(self) -> None:
        self._producer.close()


def dead_letters(settings: Settings, expected: int, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """The dead-letter topic from its start, once it holds ``expected`` records (more fail the test)."""
    consumer = KafkaConsumer(
        Topics(settings.topic_prefix).dead_letters,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2_000,
        fetch_max_bytes=4 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    found: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            found.extend(consumer)
        found.extend(consumer)  # anything more
    finally:
        consumer.close()
    assert len(found) == expected, [dict(r.headers) for r in found]
    return found


def headers(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def assert_stored_exactly(client: Client, workloads: Iterable[Workload]) -> None:
    """The workloads' raw rows are exactly theirs (counts, sums, no point twice, runs finished,
    params), and every rollup equals its raw aggregate (over everything stored)."""
    works = list(workloads)
    expected_points: dict[tuple[str, str], tuple[int, float]] = {}
    expected_readings: dict[tuple[str, str], int] = {}
    for work in works:
        batches = [work.metric_batch(i) for i in range(work.batches)]
        expected_points[(work.team, work.run_id)] = (work.metric_points, sum(sum(b.values) for b in batches))
        expected_readings[(work.team, work.run_id)] = work.readings
    where = {"runs": [(work.team, work.run_id) for work in works]}
    points = client.query(
        "SELECT team, run_id, count(), sum(value), uniqExact(key, step) FROM metrics "
        "WHERE (team, run_id) IN {runs:Array(Tuple(String, String))} GROUP BY team, run_id",
        parameters=where,
    ).result_rows
    assert {(t, r): (n, s) for t, r, n, s, _ in points} == expected_points
    assert all(distinct == n for *_, n, _, distinct in points)  # no point twice
    readings = client.query(
        "SELECT team, run_id, count() FROM hardware WHERE (team, run_id) IN {runs:Array(Tuple(String, String))} "
        "GROUP BY team, run_id",
        parameters=where,
    ).result_rows
    assert {(t, r): n for t, r, n in readings} == expected_readings
    stored_runs = client.query(
        "SELECT team, run_id, status FROM runs FINAL WHERE (team, run_id) IN {runs:Array(Tuple(String, String))} "
        "ORDER BY team, run_id",
        parameters=where,
    ).result_rows
    assert stored_runs == sorted((team, run, "finished") for team, run in where["runs"])
    params = client.query(
        "SELECT count() FROM params FINAL WHERE (team, run_id) IN {runs:Array(Tuple(String, String))}",
        parameters=where,
    ).result_rows
    assert params == [(2 * len(works),)]
    assert rollup_differences(client) == []
