"""The batch writer behind the worker's agents: decode, route bad records, drop replays, insert.

Also keeps the worker's live view of runs (crash checks) and its own health figures. Inserts run
on one thread (chDB is one session per process) and are retried with back-off until ClickHouse
acknowledges them; the agent acknowledges the batch only after that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from runstream_core.log import get_logger
from runstream_worker.decode import DecodedBatch, Rejected, SourceRecord, decode_batch, dedup_token
from runstream_worker.liveness import LivenessTracker
from runstream_worker.rows import RowBatch
from runstream_worker.selfmetrics import HealthWindow, WorkerMetrics, worker_id
from runstream_worker.settings import WorkerSettings
from runstream_worker.sink import ClickHouseSink
from runstream_worker.tables import runs

log = get_logger("runstream.worker")


@dataclass
class WorkerCounters:
    """Running totals, logged with each batch."""

    records: int = 0
    points: int = 0
    hardware_readings: int = 0
    rejected: int = 0
    replays: int = 0
    batches: int = 0
    crashed_runs: int = 0
    dead_letters: int = 0


DeadLetterSender = Callable[[Rejected], Awaitable[None]]


class BatchWriter:
    """Decodes a batch, reports bad records, and writes the rest with retry/backoff."""

    def __init__(self, settings: WorkerSettings, sink: ClickHouseSink) -> None:
        self._settings = settings
        self._sink = sink
        # chDB is one session per process: serialise every insert on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.counters = WorkerCounters()
        self.liveness = LivenessTracker(settings.worker_crash_after_s, settings.worker_stall_after_s)
        self._seeded = False
        self.dead_letter: DeadLetterSender | None = None
        self.metrics = WorkerMetrics()
        self.health = HealthWindow()
        self.worker = worker_id()
        self.next_offsets: dict[tuple[str, int], int] = {}
        """Per (topic, partition): the offset after the last record handled, for the lag figure."""

    async def handle(self, records: list[SourceRecord]) -> DecodedBatch:
        started = time.perf_counter()
        decoded = decode_batch(records, self._settings.topic_prefix)
        for rejected in decoded.rejected:
            src = rejected.record
            log.warning(
                "record skipped",
                topic=src.topic,
                partition=src.partition,
                offset=src.offset,
                reason=rejected.reason,
            )
            if self.dead_letter is not None:
                await self.dead_letter(rejected)  # before the batch is acked: a crash re-sends, never drops
        decoded.live = self.liveness.observe(decoded.events)
        if decoded.events:
            await self._with_retry(self._write, decoded, dedup_token(records))
        rows = decoded.rows
        c = self.counters
        c.records += decoded.records
        c.points += rows.metric_points
        c.hardware_readings += rows.hardware_readings
        c.rejected += len(decoded.rejected)
        c.replays += decoded.replays
        c.batches += 1
        self._account(records, decoded, time.perf_counter() - started)
        log.info(
            "batch written",
            records=decoded.records,
            points=rows.metric_points,
            hardware=rows.hardware_readings,
            runs=len(rows.runs),
            rejected=len(decoded.rejected),
            replays=decoded.replays,
            total_points=c.points,
        )
        return decoded

    def _account(self, records: list[SourceRecord], decoded: DecodedBatch, seconds: float) -> None:
        m, h, rows = self.metrics, self.health, decoded.rows
        for record in records:
            m.records.labels(record.topic).inc()
            key = (record.topic, record.partition)
            self.next_offsets[key] = max(self.next_offsets.get(key, 0), record.offset + 1)
        for table, count in (
            ("metrics", rows.metric_points),
            ("hardware", rows.hardware_readings),
            ("runs", len(rows.runs)),
            ("params", len(rows.params)),
            ("summary", len(rows.summary)),
        ):
            if count:
                m.rows.labels(table).inc(count)
        m.replays.inc(decoded.replays)
        m.batch_seconds.observe(seconds)
        h.records += decoded.records
        h.points += rows.metric_points
        h.hardware_readings += rows.hardware_readings
        h.replays += decoded.replays
        h.batch_ms.append(seconds * 1000)

    async def write_health(self, ends: dict[tuple[str, int], tuple[int, int]], now_ms: int) -> None:
        """Publish lag per partition and write one ``pipeline_health`` row for the interval just ended."""
        lag = 0
        for (topic, partition), behind in self.behind(ends).items():
            self.metrics.lag.labels(topic, str(partition)).set(behind)
            lag += behind
        window, self.health = self.health, HealthWindow()
        rows = RowBatch()
        rows.health.append(window.row(self.worker, lag, now_ms))
        await self._with_retry(self._sink.write, rows, None)

    def _write(self, decoded: DecodedBatch, token: str) -> None:
        # Replays are looked up right before the insert, on the same thread, so a retry of this
        # batch after a partial failure sees what the failed attempt did store.
        decoded.drop_replays(self._sink.stored_records(decoded.record_ids(), decoded.record_runs()))
        if decoded.rows:
            self._sink.write(decoded.rows, token)

    def behind(self, ends: dict[tuple[str, int], tuple[int, int]]) -> dict[tuple[str, int], int]:
        """Per partition, records not handled yet: its end minus the offset after the last record
        handled (or the fetch position, for a partition with nothing handled since start)."""
        return {tp: max(0, end - self.next_offsets.get(tp, position)) for tp, (end, position) in ends.items()}

    async def check_liveness(self, now_ms: int, runs_backlog: int = 0) -> None:
        """Mark runs whose heartbeats stopped as crashed (seeding from storage on the first call).

        Skipped while lifecycle records wait unread: their heartbeats may be in that backlog.
        """
        if runs_backlog:
            log.info("liveness check deferred: lifecycle records still to read", backlog=runs_backlog)
            return
        loop = asyncio.get_running_loop()
        if not self._seeded:
            try:
                running = await loop.run_in_executor(self._executor, self._sink.running_runs)
            except Exception as exc:
                log.error("could not read running runs; will retry", error=repr(exc)[:300])
                return
            for info, beat_ms, last_step in running:
                self.liveness.seed(info, beat_ms, last_step)
            self._seeded = True
        crashed = self.liveness.newly_crashed(now_ms)
        if not crashed:
            return
        rows = RowBatch()
        for info, live in crashed:
            rows.runs.append(runs.crashed(info, live, now_ms))
            log.warning("run crashed: heartbeats stopped", run_id=info.run_id, last_heartbeat_ms=live.heartbeat_at_ms)
        await self._with_retry(self._sink.write, rows, None)
        self.counters.crashed_runs += len(crashed)
        self.health.crashed_runs += len(crashed)
        self.metrics.crashed_runs.inc(len(crashed))

    async def _with_retry(self, write: Callable[..., None], *args: Any) -> None:
        """Run ``write`` on the ClickHouse thread until it succeeds, backing off 0.5 s doubling to 30 s."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                await loop.run_in_executor(self._executor, write, *args)
                return
            except Exception as exc:
                log.error("clickhouse insert failed; retrying", error=repr(exc)[:500], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def close(self) -> None:
        self._executor.submit(self._sink.close).result(timeout=30)
        self._executor.shutdown(wait=True)
