"""The worker's own figures, each counted once, in one place: ``WorkerStats``.

Prometheus reads them through the stats' ``collect`` (a custom collector: counters of records per
topic, rows per table, dead letters, replays and crashed runs; the batch latency histogram; consumer
lag per partition; rates are Prometheus's job). Each ``pipeline_health`` row takes what changed over
its interval (``interval``), so Grafana can show pipeline health from ClickHouse alone, with the
same figures.
"""

from __future__ import annotations

import bisect
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from runstream_worker.tables.pipeline_health import Interval

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the batch latency histogram's buckets."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Totals:
    """Running totals since the worker started."""

    records: int = 0
    points: int = 0
    hardware_readings: int = 0
    rejected: int = 0
    dead_letters: int = 0
    replays: int = 0
    crashed_runs: int = 0
    batches: int = 0


class WorkerStats:
    """Counts what the worker does; safe to read from another thread (the metrics endpoint's)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        self._rejected = 0
        self._dead_letters = 0
        self._replays = 0
        self._crashed_runs = 0
        self._buckets = [0] * (len(BATCH_BUCKETS) + 1)  # the last one: over the largest bound
        self._batch_seconds = 0.0
        self._lag: dict[tuple[str, int], int] = {}
        self._interval_ms: list[float] = []
        self._interval_start = clock()
        self._interval_base = Totals()

    # Counting (the runner's side).

    def batch(
        self, records: Mapping[str, int], rows: Mapping[str, int], *, rejected: int, replays: int, seconds: float
    ) -> None:
        """One batch handled: its records per topic, rows per table, records rejected and replays
        dropped, and how long it took."""
        with self._lock:
            for topic, count in records.items():
                self._records[topic] = self._records.get(topic, 0) + count
            for table, count in rows.items():
                if count:
                    self._rows[table] = self._rows.get(table, 0) + count
            self._rejected += rejected
            self._replays += replays
            self._buckets[bisect.bisect_left(BATCH_BUCKETS, seconds)] += 1
            self._batch_seconds += seconds
            self._interval_ms.append(seconds * 1000)

    def dead_letter(self) -> None:
        """One record is on the dead-letter topic."""
        with self._lock:
            self._dead_letters += 1

    def crashed(self, runs: int) -> None:
        """``runs`` runs were marked crashed."""
        with self._lock:
            self._crashed_runs += runs

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Records not handled yet, per (topic, partition)."""
        with self._lock:
            self._lag.update(lag)

    # Reading.

    def totals(self) -> Totals:
        with self._lock:
            return self._totals()

    def _totals(self) -> Totals:
        return Totals(
            records=sum(self._records.values()),
            points=self._rows.get("metrics", 0),
            hardware_readings=self._rows.get("hardware", 0),
            rejected=self._rejected,
            dead_letters=self._dead_letters,
            replays=self._replays,
            crashed_runs=self._crashed_runs,
            batches=sum(self._buckets),
        )

    def interval(self) -> Interval:
        """What changed since the previous call (or the start); the next interval starts now."""
        with self._lock:
            now, totals, batch_ms = self._clock(), self._totals(), tuple(self._interval_ms)
            base, started = self._interval_base, self._interval_start
            self._interval_base, self._interval_start, self._interval_ms = totals, now, []
        delta = {f.name: getattr(totals, f.name) - getattr(base, f.name) for f in fields(Totals)}
        return Interval(
            seconds=now - started,
            records=delta["records"],
            points=delta["points"],
            hardware_readings=delta["hardware_readings"],
            dead_letters=delta["dead_letters"],
            replays=delta["replays"],
            crashed_runs=delta["crashed_runs"],
            batch_ms=batch_ms,
        )

    def collect(self) -> Iterator[Metric]:
        """The figures as Prometheus metric families (the ``Collector`` protocol)."""
        with self._lock:
            records, rows, lag = dict(self._records), dict(self._rows), dict(self._lag)
            singles = (self._dead_letters, self._replays, self._crashed_runs)
            buckets, seconds = list(self._buckets), self._batch_seconds
        family = CounterMetricFamily("runstream_worker_records", "Kafka records handled", labels=["topic"])
        for topic, count in sorted(records.items()):
            family.add_metric([topic], count)
        yield family
        family = CounterMetricFamily("runstream_worker_rows", "Rows inserted into ClickHouse", labels=["table"])
        for table, count in sorted(rows.items()):
            family.add_metric([table], count)
        yield family
        dead_letters, replays, crashed_runs = singles
        yield CounterMetricFamily(
            "runstream_worker_dead_letters", "Records sent to the dead-letter topic", value=dead_letters
        )
        yield CounterMetricFamily(
            "runstream_worker_replays", "Replayed records dropped as already stored", value=replays
        )
        yield CounterMetricFamily("runstream_worker_crashed_runs", "Runs marked crashed", value=crashed_runs)
        cumulative, running = [], 0
        for bound, count in zip((*(str(b) for b in BATCH_BUCKETS), "+Inf"), buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "runstream_worker_batch_seconds",
            "Time to decode and insert one batch",
            buckets=cumulative,
            sum_value=seconds,
        )
        gauge = GaugeMetricFamily(
            "runstream_worker_consumer_lag",
            "Records between the last one handled and the end of the partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(lag.items()):
            gauge.add_metric([topic, str(partition)], behind)
        yield gauge

    def registry(self) -> CollectorRegistry:
        """A registry of its own that reads these stats."""
        registry = CollectorRegistry()
        registry.register(self)
        return registry
