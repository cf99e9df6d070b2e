"""The alert engine inside the runner: load what a take's runs need, evaluate, persist, then send.

Per take (``evaluate``, before the take's rows are stored): load the stored state of runs met for
the first time, and their group and tags from ``runs``; evaluate; write the changed state and the
new messages (``alert_state``, ``alerts``); only then queue the messages for their webhooks. A
worker that dies after the write has its messages sent by the worker that owns the run next
(``resend_pending``),
and re-evaluates nothing (each run's marks say what was evaluated). The timer (``tick``) evaluates
the time-based rules of the runs this worker owns; those met only in storage are loaded, and their
messages not sent yet are queued, the first time after each assignment.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from kafka.partitioner.default import murmur2

from runstream_core.events import Event, RunInfo
from runstream_core.log import get_logger
from runstream_worker.alerts import state as st
from runstream_worker.alerts.engine import AlertEngine, Outcome
from runstream_worker.alerts.notify import Notifier
from runstream_worker.alerts.rulebook import RuleBook
from runstream_worker.rows import RowBatch
from runstream_worker.tables import alerts as table
from runstream_worker.tables.alerts import AlertMessage

log = get_logger("runstream.alerts")

T = TypeVar("T")

INFO_RETRY_MS = 2_000
"""How often the group and tags of a run not in ``runs`` yet are looked up again."""

SEED_SINCE_MS = 7 * 86_400_000
"""Runs whose alert state changed this recently are loaded for the time-based rules after an assignment."""


@runtime_checkable
class AlertStore(Protocol):
    """The reads the alert pipeline makes (``runstream_worker.sink.ClickHouseSink``)."""

    def alert_states(self, keys: set[tuple[str, str, str]]) -> Sequence[Any]: ...

    def run_infos(self, keys: set[tuple[str, str, str]]) -> Sequence[Any]: ...

    def alert_runs_since(self, since_ms: int) -> Sequence[Any]: ...

    def pending_alerts(self, since_ms: int) -> Sequence[AlertMessage]: ...


OnClickHouse = Callable[..., Awaitable[Any]]
WriteOwn = Callable[[RowBatch, str], Awaitable[None]]


class AlertPipeline:
    """Holds the engine and the rule book; the runner hands it every take and every tick."""

    def __init__(
        self,
        book: RuleBook,
        store: AlertStore | None,
        on_clickhouse: OnClickHouse,
        write_own: WriteOwn,
        clock: Callable[[], int],
        resend_ms: int = 86_400_000,
    ) -> None:
        self.book = book
        self._resend_ms = resend_ms
        self.engine = AlertEngine()
        self._store = store
        self._on_clickhouse = on_clickhouse
        self._write_own = write_own
        self._clock = clock
        self.notifier: Notifier | None = None
        self._info_tried: dict[st.RunKey, int] = {}
        self._version_ms = 0
        self._owned: tuple[frozenset[int], int] | None = None
        """Partitions of the runs topic assigned here, and the topic's partition count."""
        self._seeded = True
        self._assignments = 0
        """Assignments so far: a read that spans one is made again (the runs' state may have moved)."""

    # -- ownership ------------------------------------------------------------------------
    def assigned(self, partitions: Iterable[int], count: int) -> None:
        """Partitions of the runs topic now assigned (of ``count``): forget every run and load the
        owned ones on the next tick."""
        self.engine.clear()
        self._assignments += 1
        self._owned = (frozenset(partitions), max(1, count))
        self._seeded = False

    def owns(self, run_id: str) -> bool:
        """Whether this worker reads the run's records (the producers' partitioner: murmur2 of the
        run id, the record key)."""
        if self._owned is None:
            return True
        partitions, count = self._owned
        return (murmur2(run_id.encode()) & 0x7FFFFFFF) % count in partitions

    # -- per take -------------------------------------------------------------------------
    async def evaluate(self, events: list[Event]) -> None:
        if self._store is None:
            return
        rules = self.book.current()
        keys = self.engine.concerns(events, rules)
        if not keys:
            return
        await self._load(keys)
        outcome = self.engine.observe(events, rules, self._clock())
        await self._persist(outcome)

    async def crashed(self, info: RunInfo) -> None:
        rules = self.book.current()
        if self._store is not None and info.team in rules:
            key = (info.team, info.project, info.run_id)
            await self._load({key})
            await self._persist(self.engine.crashed(info, rules, self._clock()))

    async def tick(self) -> None:
        rules = self.book.current()
        if not rules or self._store is None:
            return
        if not self._seeded:
            assignments = self._assignments
            since = self._clock() - SEED_SINCE_MS
            found = await self._retrying(self._store.alert_runs_since, since, what="alert runs")
            keys = {(str(t), str(p), str(r)) for t, p, r in found if self.owns(str(r)) and str(t) in rules}
            await self._load(keys)
            if self._resend_ms:
                await self.resend_pending(self._clock() - self._resend_ms)
            if assignments != self._assignments:
                return  # assigned again meanwhile: the next tick loads the runs owned now
            self._seeded = True
        await self._persist(self.engine.tick(rules, self._clock()))

    async def _load(self, keys: set[st.RunKey]) -> None:
        """Put ``keys`` in the engine: their stored state the first time, their group and tags from
        ``runs`` while unknown. Every read is awaited before anything is applied, so the caller
        evaluates right after, with no await in between: a timer tick (which forgets quiet runs) or
        an assignment (which forgets every run) during a read cannot drop a run the take concerns."""
        assert self._store is not None  # callers return early without one
        while True:
            assignments, unknown = self._assignments, self.engine.unknown(keys)
            stored = await self._stored_states(unknown) if unknown else {}
            now = self._clock()
            lookup = {
                key
                for key in keys
                if not self._info_known(key, stored) and now - self._info_tried.get(key, 0) >= INFO_RETRY_MS
            }
            infos = await self._retrying(self._store.run_infos, lookup, what="run info") if lookup else ()
            if assignments != self._assignments or self.engine.unknown(keys) - unknown:
                continue  # runs forgotten meanwhile: their state may have changed since, read it again
            for key, (run, entries) in stored.items():
                self.engine.load(key, run, entries)
            for key in lookup:
                self._info_tried[key] = now
            for team, project, run_id, group, tags, status, name in infos:
                self.engine.set_info(
                    (str(team), str(project), str(run_id)), str(group), dict(tags), str(name), str(status)
                )
            return

    def _info_known(self, key: st.RunKey, stored: dict[st.RunKey, tuple[st.RunState | None, Any]]) -> bool:
        if key in stored:
            run = stored[key][0]
            return run is not None and run.info_known
        held = self.engine.runs.get(key)
        return held is None or held.info_known  # not held: forgotten meanwhile, read again by the caller

    async def _stored_states(
        self, keys: set[st.RunKey]
    ) -> dict[st.RunKey, tuple[st.RunState | None, dict[str, st.EntryState]]]:
        """The stored state of each of ``keys`` (``None`` and no entries: nothing stored)."""
        assert self._store is not None
        rows = await self._retrying(self._store.alert_states, keys, what="alert state")
        runs: dict[st.RunKey, st.RunState | None] = dict.fromkeys(keys)
        entries: dict[st.RunKey, dict[str, st.EntryState]] = {k: {} for k in keys}
        for team, project, run_id, entry, blob in rows:
            key = (str(team), str(project), str(run_id))
            if key not in runs:
                continue
            if entry == st.RUN_ENTRY:
                runs[key] = st.decode_run(blob)
            else:
                decoded = st.decode_entry(blob)
                if decoded is not None:
                    entries[key][str(entry)] = decoded
        return {key: (runs[key], entries[key]) for key in keys}

    async def _persist(self, outcome: Outcome) -> None:
        if not outcome.dirty and not outcome.messages:
            return
        now = max(self._clock(), self._version_ms + 1)
        self._version_ms = now
        rows = RowBatch()
        for key, entry in sorted(outcome.dirty):
            if entry == st.RUN_ENTRY:
                held: st.RunState | st.EntryState | None = self.engine.runs.get(key)
            else:
                held = self.engine.entries.get(key, {}).get(entry)
            if held is not None:
                rows.alert_state.append(table.state_row(key, entry, st.encode(held), now))
        rows.alerts.extend(message.row() for message in outcome.messages)
        await self._write_own(rows, "alerts")
        for message in outcome.messages:
            log.warning(
                "alert",
                team=message.team,
                project=message.project,
                run_id=message.run_id,
                alert_id=message.alert_id,
                message=message.event,
                title=message.title,
                delivery=message.delivery,
            )
        if self.notifier is not None:
            for refused in self.notifier.submit(outcome.messages):
                await self.record(dataclasses.replace(refused, delivery=table.FAILED, error="the send queue is full"))

    async def record(self, message: AlertMessage) -> None:
        """Store a message's delivery outcome (a newer version of its row)."""
        now = max(self._clock(), message.ts_ms + 1, self._version_ms + 1)
        self._version_ms = now
        rows = RowBatch()
        rows.alerts.append(dataclasses.replace(message, updated_ms=now).row())
        await self._write_own(rows, "alert delivery")

    async def resend_pending(self, since_ms: int) -> int:
        """Queue the stored messages of the runs this worker owns whose webhooks were not reached (a
        worker stopped in between), but for those it is sending itself."""
        if self.notifier is None or self._store is None:
            return 0
        stored = await self._retrying(self._store.pending_alerts, since_ms, what="pending alerts")
        pending = [m for m in stored if self.owns(m.run_id) and not self.notifier.sending(m)]
        refused = self.notifier.submit(pending)
        if pending:
            log.info("alerts not sent before are sent now", alerts=len(pending) - len(refused))
        return len(pending) - len(refused)

    async def _retrying(self, call: Callable[..., Sequence[T]], *args: Any, what: str) -> Sequence[T]:
        delay = 0.5
        while True:
            try:
                result: Sequence[T] = await self._on_clickhouse(call, *args)
                return result
            except Exception as exc:
                log.error(f"could not read {what}; retrying", error=repr(exc)[:300], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
