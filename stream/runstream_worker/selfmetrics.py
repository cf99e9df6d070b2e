"""The worker's own health: Prometheus metrics on an HTTP port and rows in ``pipeline_health``.

Prometheus gets counters (records per topic, rows per table, dead letters, replays, crashed runs),
the batch latency histogram and consumer lag per partition; rates are Prometheus's job. The
``pipeline_health`` table gets one row per worker per interval with the same figures as deltas,
so Grafana can show pipeline health from ClickHouse alone.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

HEALTH_COLUMNS = (
    "ts",
    "worker",
    "interval_s",
    "records",
    "points",
    "hardware_readings",
    "dead_letters",
    "replays",
    "batches",
    "crashed_runs",
    "consumer_lag",
    "batch_p50_ms",
    "batch_max_ms",
)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerMetrics:
    """Prometheus instruments of one worker, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("runstream_worker_records", "Kafka records handled", ["topic"], registry=r)
        self.rows = Counter("runstream_worker_rows", "Rows inserted into ClickHouse", ["table"], registry=r)
        self.dead_letters = Counter(
            "runstream_worker_dead_letters", "Records sent to the dead-letter topic", registry=r
        )
        self.replays = Counter("runstream_worker_replays", "Replayed records dropped as already stored", registry=r)
        self.crashed_runs = Counter("runstream_worker_crashed_runs", "Runs marked crashed", registry=r)
        self.batch_seconds = Histogram(
            "runstream_worker_batch_seconds",
            "Time to decode and insert one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.lag = Gauge(
            "runstream_worker_consumer_lag",
            "Records between the last one handled and the end of the partition",
            ["topic", "partition"],
            registry=r,
        )

    def serve(self, port: int) -> None:
        start_http_server(port, addr="0.0.0.0", registry=self.registry)  # noqa: S104 - scraped by Prometheus


@dataclass
class HealthWindow:
    """Figures accumulated since the last ``pipeline_health`` row."""

    started: float = field(default_factory=time.monotonic)
    records: int = 0
    points: int = 0
    hardware_readings: int = 0
    dead_letters: int = 0
    replays: int = 0
    crashed_runs: int = 0
    batch_ms: list[float] = field(default_factory=list)

    def row(self, worker: str, lag: int, now_ms: int) -> list[Any]:
        ms = sorted(self.batch_ms)
        return [
            now_ms,
            worker,
            round(time.monotonic() - self.started, 3),
            self.records,
            self.points,
            self.hardware_readings,
            self.dead_letters,
            self.replays,
            len(ms),
            self.crashed_runs,
            lag,
            statistics.median(ms) if ms else 0.0,
            ms[-1] if ms else 0.0,
        ]
