"""The runner between Kafka and the sink: it owns retry, dead letters, liveness and the stats.

For each take: decode (a pure step), send bad records to the dead-letter topic, update the live
view of runs, then store the events and return; only then may the caller acknowledge the take's
offsets. Every ClickHouse call runs on one thread (chDB is one session per process). The runner
also writes crashed runs (``check_liveness``) and the worker's ``pipeline_health`` rows
(``write_health``).

Storing a set of events (``_store``):

1. **First attempt only**: look the records up in the rows already stored (replays, or what a
   worker killed mid-insert left), drop what is there, and insert once more, under its own token,
   whatever a recent insert stored without finishing its materialized views (``sink.repair``);
   build the rows (an event whose rows cannot be built is set aside); name the set with a new
   deduplication token.
2. Insert. A **transient** failure (``failures.classify``) is retried with the same rows and token,
   without the lookup, for as long as it takes: the views that failed the first time are filled,
   and nothing is stored twice.
3. A **deterministic** failure is tried ``worker_insert_tries`` times in all, then the set is split
   in halves, each stored as in 1; a half that fails deterministically is split at once, a single
   record that fails ``worker_insert_tries`` times goes to the dead-letter topic with ClickHouse's
   code and message. The rest of the take is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from runstream_core.events import APPEND_ONLY_EVENTS, Event
from runstream_core.log import get_logger
from runstream_worker.alerts.pipeline import AlertPipeline, AlertStore
from runstream_worker.alerts.rulebook import RuleBook
from runstream_worker.dead_letters import Letter, LetterTooLargeError, letter
from runstream_worker.decode import (
    RecordId,
    Rejected,
    SourceRecord,
    StoredRows,
    decode_batch,
    dedup_token,
    drop_stored,
    token_created_ms,
)
from runstream_worker.failures import Failure, classify
from runstream_worker.liveness import LivenessTracker
from runstream_worker.rows import RowBatch, build_rows
from runstream_worker.settings import WorkerSettings
from runstream_worker.stats import WorkerStats, worker_id
from runstream_worker.tables import pipeline_health, runs
from runstream_worker.tables.alerts import AlertMessage
from runstream_worker.tables.runs import LiveFields, RunKey, RunningRun

log = get_logger("runstream.worker")

T = TypeVar("T")

DeadLetterSender = Callable[[Letter], Awaitable[None]]
"""Puts a dead letter on the dead-letter topic; returns once Kafka has it. Raises ``LetterTooLargeError``
when Kafka refuses it for its size."""

PartitionEnds = dict[tuple[str, int], tuple[int, int]]
"""Per (topic, partition): its end offset and the consumer's fetch position."""

DEFAULT_DEAD_LETTER_BYTES = 1_000_000

ALERTS_SOURCE = "alerts"
"""The ``source_topic`` header of an alert that went to the dead-letter topic."""
"""Faust's producer's ``max_request_size``: the largest record it sends."""


class Sink(Protocol):
    """What the runner writes through (``runstream_worker.sink.ClickHouseSink``)."""

    def write(self, rows: RowBatch, token: str | None) -> None: ...

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> Sequence[StoredRows]: ...

    def repair(self, token: str) -> int: ...

    def running_runs(self) -> Sequence[RunningRun]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``first_s``, doubling up to ``max_s``."""

    first_s: float = 0.5
    max_s: float = 30.0


DEFAULT_BACKOFF = Backoff()


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Stored:
    """What storing a set of events came to: rows per table, replays dropped, records refused."""

    counts: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, other: Stored) -> None:
        self.counts.update(other.counts)
        self.replays += other.replays
        self.rejected.extend(other.rejected)


@dataclass
class Handled:
    """One take, handled: its records, rows per table, replays and records set aside."""

    records: int
    counts: Counter[str]
    replays: int
    rejected: list[Rejected]


@dataclass
class _Prepared:
    events: list[Event]
    sources: list[SourceRecord]
    rows: RowBatch
    token: str
    replays: int
    rejected: list[Rejected]


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
        clock: Callable[[], int] = wall_clock_ms,
        dead_letter_max_bytes: int = DEFAULT_DEAD_LETTER_BYTES,
        rules: RuleBook | None = None,
    ) -> None:
        self._topic_prefix = settings.topic_prefix
        self._insert_tries = settings.worker_insert_tries
        self._repair_window_ms = int(settings.worker_repair_window_s * 1000)
        self._sink = sink
        self._dead_letters = dead_letters
        self._dead_letter_max_bytes = dead_letter_max_bytes
        self._backoff = backoff
        self._clock = clock
        # chDB is one session per process: serialise every ClickHouse call on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.stats = stats if stats is not None else WorkerStats()
        self.liveness = LivenessTracker(settings.worker_crash_after_s, settings.worker_stall_after_s)
        self._seeded = False
        self.worker = worker if worker is not None else worker_id()
        self._next_offsets: dict[tuple[str, int], int] = {}
        """Per (topic, partition): the offset after the last record handled, for the lag figure."""
        # A sink without the alert tables' reads (a test's) evaluates no alerts.
        self.alerts = AlertPipeline(
            rules if rules is not None else RuleBook(),
            sink if isinstance(sink, AlertStore) else None,
            self._on_clickhouse,
            self._write_own,
            clock,
            resend_ms=int(settings.worker_alert_resend_s * 1000),
        )

    async def handle(self, records: Sequence[SourceRecord]) -> Handled:
        """Store one take; returns once it is stored (or set aside), never earlier."""
        started = time.perf_counter()
        decoded = decode_batch(records, self._topic_prefix)
        for bad in decoded.rejected:
            await self._reject(bad)  # before the take is acked: a crash re-sends, never drops
        decoded.live = self.liveness.observe(decoded.events, self._clock())
        # Alerts first: their state and messages are stored before the take, and a replay of the
        # take is not evaluated again (alerts/pipeline.py).
        await self.alerts.evaluate(decoded.events)
        stored = Stored(replays=decoded.replays)
        if decoded.events:
            stored.add(await self._store(decoded.events, decoded.sources, decoded.live, whole=True))
        for bad in stored.rejected:
            await self._reject(bad)
        per_topic: dict[str, int] = {}
        offsets = self._next_offsets
        for record in records:
            per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
            key = (record.topic, record.partition)
            offsets[key] = max(offsets.get(key, 0), record.offset + 1)
        rejected = [*decoded.rejected, *stored.rejected]
        self.stats.batch(
            per_topic,
            dict(stored.counts),
            rejected=len(rejected),
            replays=stored.replays,
            seconds=time.perf_counter() - started,
        )
        log.info(
            "batch written",
            records=decoded.records,
            points=stored.counts["metrics"],
            hardware=stored.counts["hardware"],
            runs=stored.counts["runs"],
            rejected=len(rejected),
            replays=stored.replays,
            total_points=self.stats.totals().points,
        )
        return Handled(decoded.records, stored.counts, stored.replays, rejected)

    async def _reject(self, rejected: Rejected) -> None:
        src = rejected.record
        log.warning(
            "record skipped", topic=src.topic, partition=src.partition, offset=src.offset, reason=rejected.reason
        )
        await self._send_dead_letter(rejected)
        self.stats.dead_letter()

    async def _send_dead_letter(self, rejected: Rejected) -> None:
        """Put ``rejected`` on the dead-letter topic, cut to Kafka's limit; retried until Kafka has it,
        and never raises (the agent must go on)."""
        max_bytes = self._dead_letter_max_bytes
        delay = self._backoff.first_s
        while True:
            item = letter(rejected, max_bytes)
            try:
                await self._dead_letters(item)
                return
            except LetterTooLargeError:
                max_bytes = max(1024, max_bytes // 2)
                log.warning("dead letter refused as too large; cutting it further", max_bytes=max_bytes)
                continue
            except Exception as exc:
                src = rejected.record
                log.error(
                    "dead letter not sent; retrying",
                    topic=src.topic,
                    partition=src.partition,
                    offset=src.offset,
                    error=repr(exc)[:300],
                    retry_in_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff.max_s)

    async def _on_clickhouse(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    async def _store(
        self, events: list[Event], sources: list[SourceRecord], live: Mapping[RunKey, LiveFields], *, whole: bool
    ) -> Stored:
        """Store ``events`` (from ``sources``): the steps in the module's docstring."""
        delay = self._backoff.first_s
        while True:
            try:
                # The lookup and the first insert in one call on the ClickHouse thread: a take handled
                # alongside (``worker_takes_at_once``) cannot look its records up in between.
                prepared, failed = await self._on_clickhouse(self._prepare_and_write, events, sources, live)
                break
            except Exception as exc:
                log.error("clickhouse lookup failed; retrying", error=repr(exc)[:500], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff.max_s)
        done = Stored(Counter(prepared.rows.counts()), prepared.replays, prepared.rejected)
        if failed is None:
            return done
        events, sources = prepared.events, prepared.sources
        delay, tries = self._backoff.first_s, 0
        while True:
            if failed is None:
                try:
                    await self._on_clickhouse(self._sink.write, prepared.rows, prepared.token)
                    return done
                except Exception as exc:
                    failed = exc
            failure, failed = classify(failed), None
            if not failure.deterministic:
                log.error("clickhouse insert failed; retrying", error=failure.message[:500], retry_in_s=delay)
            else:
                tries += 1
                if len(events) > 1 and (tries >= self._insert_tries or not whole):
                    log.warning(
                        "clickhouse refused the batch; storing it in halves to find the records at fault",
                        records=len(events),
                        code=failure.code,
                        error=failure.message[:300],
                    )
                    return await self._store_halves(events, sources, live, prepared.replays, prepared.rejected)
                if tries >= self._insert_tries:
                    src = sources[0]
                    rejected = Rejected(src, failure.reason())
                    return Stored(replays=prepared.replays, rejected=[*prepared.rejected, rejected])
                self._log_refused(failure, tries)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff.max_s)

    async def _store_halves(
        self,
        events: list[Event],
        sources: list[SourceRecord],
        live: Mapping[RunKey, LiveFields],
        replays: int,
        rejected: list[Rejected],
    ) -> Stored:
        middle = len(events) // 2
        done = Stored(replays=replays, rejected=list(rejected))
        done.add(await self._store(events[:middle], sources[:middle], live, whole=False))
        done.add(await self._store(events[middle:], sources[middle:], live, whole=False))
        return done

    def _log_refused(self, failure: Failure, tries: int) -> None:
        log.warning(
            "clickhouse refused the batch; trying again",
            code=failure.code,
            error=failure.message[:300],
            tries=tries,
            of=self._insert_tries,
        )

    def _prepare_and_write(
        self, events: list[Event], sources: list[SourceRecord], live: Mapping[RunKey, LiveFields]
    ) -> tuple[_Prepared, Exception | None]:
        """``_prepare``, then the first insert of its rows: the prepared set and what the insert raised
        (None: stored, or nothing to store). A failed lookup raises."""
        prepared = self._prepare(events, sources, live)
        if not prepared.rows:
            return prepared, None
        try:
            self._sink.write(prepared.rows, prepared.token)
        except Exception as exc:
            return prepared, exc
        return prepared, None

    def _prepare(
        self, events: list[Event], sources: list[SourceRecord], live: Mapping[RunKey, LiveFields]
    ) -> _Prepared:
        """The first attempt's part before the insert (on the ClickHouse thread): look stored records
        up, repair what a recent insert left short, build the rows and name them."""
        replays = 0
        ids = {(e.producer_id, e.seq) for e in events if isinstance(e, APPEND_ONLY_EVENTS) and e.producer_id}
        if ids:
            run_keys = {(e.team, e.project, e.run_id) for e in events if isinstance(e, APPEND_ONLY_EVENTS)}
            found = self._sink.stored_records(ids, run_keys)
            if found:
                self._repair({unit.token for unit in found})
                events, sources, replays = drop_stored(events, sources, found)
        rows, failed = build_rows(events, live)
        rejected = []
        if failed:
            bad = {index for index, _ in failed}
            for index, exc in failed:
                reason = f"could not build rows: {type(exc).__name__}: {exc}"
                rejected.append(Rejected(sources[index], reason[:2000]))
            events = [e for i, e in enumerate(events) if i not in bad]
            sources = [s for i, s in enumerate(sources) if i not in bad]
        token = dedup_token(sources, events, self._clock())
        return _Prepared(events, sources, rows, token, replays, rejected)

    def _repair(self, tokens: set[str]) -> None:
        """Insert once more the rows stored under each recent token (the views they feed may have
        been left short by a killed insert); a token older than ``worker_repair_window_s`` may be
        forgotten by ClickHouse, and repeating its rows would store them twice: it is left alone."""
        now = self._clock()
        for token in sorted(tokens):
            created = token_created_ms(token)
            if created is None or now - created > self._repair_window_ms:
                continue
            try:
                repeated = self._sink.repair(token)
            except Exception as exc:
                failure = classify(exc)
                if not failure.deterministic:
                    raise
                log.error("could not complete the rollups of stored rows", token=token, error=failure.message[:300])
                continue
            log.info("stored rows inserted again to complete their rollups", token=token, rows=repeated)

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
        await self._write_own(rows, "pipeline health")

    async def check_liveness(self, now_ms: int, runs_backlog: int = 0) -> None:
        """Mark runs whose heartbeats stopped as crashed (seeding from storage on the first call).

        Skipped while lifecycle records wait unread: their heartbeats may be in that backlog.
        """
        if runs_backlog:
            log.info("liveness check deferred: lifecycle records still to read", backlog=runs_backlog)
            return
        if not self._seeded:
            try:
                running = await self._on_clickhouse(self._sink.running_runs)
            except Exception as exc:
                log.error("could not read running runs; will retry", error=repr(exc)[:300])
                return
            for run in running:
                self.liveness.seed(run.info, run.heartbeat_at_ms, run.last_step, run.version_ms, now_ms)
            self._seeded = True
        crashed = self.liveness.newly_crashed(now_ms)
        if not crashed:
            return
        rows = RowBatch()
        for found in crashed:
            info = found.info
            rows.runs.append(runs.crashed(info, found.live, found.last_version_ms))
            log.warning(
                "run crashed: heartbeats stopped",
                team=info.team,
                project=info.project,
                run_id=info.run_id,
                last_heartbeat_ms=found.live.heartbeat_at_ms,
            )
        await self._write_own(rows, "crashed runs")
        self.stats.crashed(len(crashed))
        for found in crashed:
            await self.alerts.crashed(found.info)

    async def alert_undelivered(self, message: AlertMessage, body: bytes, reason: str) -> None:
        """Put an alert its webhooks did not take on the dead-letter topic (its body, never a URL)."""
        source = SourceRecord(ALERTS_SOURCE, -1, -1, body, message.alert_id.encode())
        await self._send_dead_letter(Rejected(source, f"alert not delivered: {reason}"[:2000]))
        self.stats.dead_letter()

    async def _write_own(self, rows: RowBatch, what: str) -> None:
        """Write rows the worker makes itself: transient failures are retried until they pass; rows
        refused ``worker_insert_tries`` times are logged and dropped."""
        delay, tries = self._backoff.first_s, 0
        while True:
            try:
                await self._on_clickhouse(self._sink.write, rows, None)
                return
            except Exception as exc:
                failure = classify(exc)
            if failure.deterministic:
                tries += 1
                if tries >= self._insert_tries:
                    log.error(f"clickhouse refused the worker's {what}; dropped", error=failure.message[:500])
                    return
            log.error(f"clickhouse insert of {what} failed; retrying", error=failure.message[:500], retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff.max_s)

    def close(self) -> None:
        """Close the sink (on the ClickHouse thread) and stop that thread."""
        self._executor.submit(self._sink.close).result(timeout=30)
        self._executor.shutdown(wait=True)
