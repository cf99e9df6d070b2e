"""The runner between Kafka and the sink: it owns retry, dead letters, liveness and the stats.

For each batch of records: decode (a pure step), send bad records to the dead-letter topic, update
the live view of runs, look replays up and write the rows, retrying with back-off until ClickHouse
acknowledges them; only then does ``handle`` return, and only then may the caller acknowledge the
batch's offsets. Every ClickHouse call runs on one thread (chDB is one session per process). The
runner also writes crashed runs (``check_liveness``) and the worker's ``pipeline_health`` rows
(``write_health``), both through the same retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from runstream_core.log import get_logger
from runstream_worker.decode import DecodedBatch, RecordId, Rejected, SourceRecord, decode_batch, dedup_token
from runstream_worker.liveness import LivenessTracker
from runstream_worker.rows import RowBatch
from runstream_worker.settings import WorkerSettings
from runstream_worker.stats import WorkerStats, worker_id
from runstream_worker.tables import pipeline_health, runs
from runstream_worker.tables.runs import RunningRun

log = get_logger("runstream.worker")

DeadLetterSender = Callable[[Rejected], Awaitable[None]]
"""Puts a rejected record on the dead-letter topic; returns once Kafka has it."""

PartitionEnds = dict[tuple[str, int], tuple[int, int]]
"""Per (topic, partition): its end offset and the consumer's fetch position."""


class Sink(Protocol):
    """What the runner writes through (``runstream_worker.sink.ClickHouseSink``)."""

    def write(self, rows: RowBatch, token: str | None) -> None: ...

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> set[RecordId]: ...

    def running_runs(self) -> Sequence[RunningRun]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``first_s``, doubling up to ``max_s``."""

    first_s: float = 0.5
    max_s: float = 30.0


DEFAULT_BACKOFF = Backoff()


class Runner:
    """Turns batches of Kafka records into rows in ClickHouse, exactly as long as it takes."""

    def __init__(
        self,
        settings: WorkerSettings,
        sink: Sink,
        dead_letters: DeadLetterSender,
        stats: WorkerStats | None = None,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        worker: str | None = None,
    ) -> None:
        self._topic_prefix = settings.topic_prefix
        self._sink = sink
        self._dead_letters = dead_letters
        self._backoff = backoff
        # chDB is one session per process: serialise every ClickHouse call on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.stats = stats if stats is not None else WorkerStats()
        self.liveness = LivenessTracker(settings.worker_crash_after_s, settings.worker_stall_after_s)
        self._seeded = False
        self.worker = worker if worker is not None else worker_id()
        self._next_offsets: dict[tuple[str, int], int] = {}
        """Per (topic, partition): the offset after the last record handled, for the lag figure."""

    async def handle(self, records: Sequence[SourceRecord]) -> DecodedBatch:
        """Store one batch; returns once it is stored (or set aside), never earlier."""
        started = time.perf_counter()
        decoded = decode_batch(records, self._topic_prefix)
        for rejected in decoded.rejected:
            src = rejected.record
            log.warning(
                "record skipped", topic=src.topic, partition=src.partition, offset=src.offset, reason=rejected.reason
            )
            await self._dead_letters(rejected)  # before the batch is acked: a crash re-sends, never drops
            self.stats.dead_letter()
        decoded.live = self.liveness.observe(decoded.events)
        if decoded.events:
            await self._with_retry(self._write, decoded, dedup_token(records))
        per_topic: dict[str, int] = {}
        offsets = self._next_offsets
        for record in records:
            per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
            key = (record.topic, record.partition)
            offsets[key] = max(offsets.get(key, 0), record.offset + 1)
        rows = decoded.rows
        self.stats.batch(
            per_topic,
            rows.counts(),
            rejected=len(decoded.rejected),
            replays=decoded.replays,
            seconds=time.perf_counter() - started,
        )
        log.info(
            "batch written",
            records=decoded.records,
            points=rows.metric_points,
            hardware=rows.hardware_readings,
            runs=len(rows.runs),
            rejected=len(decoded.rejected),
            replays=decoded.replays,
            total_points=self.stats.totals().points,
        )
        return decoded

    def _write(self, decoded: DecodedBatch, token: str) -> None:
        # Replays are looked up right before the insert, on the same thread, so a retry of this
        # batch after a partial failure sees what the failed attempt did store.
        decoded.drop_replays(self._sink.stored_records(decoded.record_ids(), decoded.record_runs()))
        if decoded.rows:
            self._sink.write(decoded.rows, token)

    def behind(self, ends: PartitionEnds) -> dict[tuple[str, int], int]:
        """Per partition, records not handled yet: its end minus the offset after the last record
        handled (or the fetch position, for a partition with nothing handled since start)."""
        return {tp: max(0, end - self._next_offsets.get(tp, position)) for tp, (end, position) in ends.items()}

    async def write_health(self, ends: PartitionEnds, now_ms: int) -> None:
        """Publish lag per partition and write one ``pipeline_health`` row for the interval just ended."""
        behind = self.behind(ends)
        self.stats.set_lag(behind)
        rows = RowBatch()
        rows.health.append(pipeline_health.row(self.worker, self.stats.interval(), sum(behind.values()), now_ms))
        await self._with_retry(self._sink.write, rows, None)

    async def check_liveness(self, now_ms: int, runs_backlog: int = 0) -> None:
        """Mark runs whose heartbeats stopped as crashed (seeding from storage on the first call).

        Skipped while lifecycle records wait unread: their heartbeats may be in that backlog.
        """
        if runs_backlog:
            log.info("liveness check deferred: lifecycle records still to read", backlog=runs_backlog)
            return
        if not self._seeded:
            loop = asyncio.get_running_loop()
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
        self.stats.crashed(len(crashed))

    async def _with_retry(self, write: Callable[..., None], *args: Any) -> None:
        """Run ``write`` on the ClickHouse thread until it succeeds, backing off as ``backoff`` says."""
        loop = asyncio.get_running_loop()
        delay = self._backoff.first_s
        while True:
            try:
                await loop.run_in_executor(self._executor, write, *args)
                return
            except Exception as exc:
                log.error("clickhouse insert failed; retrying", error=repr(exc)[:500], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff.max_s)

    def close(self) -> None:
        """Close the sink (on the ClickHouse thread) and stop that thread."""
        self._executor.submit(self._sink.close).result(timeout=30)
        self._executor.shutdown(wait=True)
