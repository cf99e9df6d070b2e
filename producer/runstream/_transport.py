"""Background delivery of one producer's events: inbox -> spool (on disk) -> Kafka.

A run talks to its ``Transport`` through a handful of calls, as wandb's run talks to its interface
through ``publish_*``: ``offer_points`` (one row of a ``log()`` call), ``check_points`` and
``reject_points`` (points checked or refused in the caller), ``publish`` (any other event),
``flush``, ``close``, and ``stats()`` for the figures. What is buffered, what was refused because
the buffer was full and what was rejected as bad input are counted here, and only here.

Offering a row only appends it to an inbox (a deque). One daemon thread packs what it finds into
records, numbers them, appends each to the spool before anything else (so a killed job leaves them
on disk), and sends them with kafka-python. Records wait in memory for Kafka up to a byte budget;
past it (Kafka down or slow) they stay on disk only and are read back in order when Kafka returns.
Spool segments are deleted once Kafka has acknowledged all their records. When the spool cannot
be written (a full disk), records go on to Kafka from memory, within the same byte budget; those
that fit nowhere are dropped and counted, and the spool is tried again after a pause.
Nothing here raises into user code: failures are counted and logged once per kind.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from runstream._buffer import BinaryPacker, ColumnPacker, PointColumns
from runstream._kafka import RecordSender, kafka_sender, too_large
from runstream._points import Number, check_points
from runstream._split import split_event, split_for_replay
from runstream._spool import SpoolCursor, SpoolWriter
from runstream.settings import Settings
from runstream_core.columns import to_columns
from runstream_core.events import Event, HardwareBatch, MetricBatch, decode_event, encode_event
from runstream_core.log import WarnOnce, get_logger
from runstream_core.topics import INPUTS, TopicCode

log = get_logger("runstream.transport")

_SEND_BATCH = 256  # records read back from the spool per step
_MAX_BACKOFF_S = 10.0
_SPOOL_FLUSH_BYTES = 1 << 20  # records handed to the OS at least this often, and after each packing step
_SPOOL_RETRY_S = 30.0  # after a failed spool write, records stay in memory this long before the disk is tried again
_NOT_SPOOLED = -1  # the "segment" of records kept in memory only
_MIN_RECORD_BYTES = 64 * 1024  # the smallest max_record_bytes there is (a point's key alone may take 1 kB)
# The topic of each event kind a producer publishes, from the pipeline's topics table.
_TOPIC_OF: dict[type[Any], TopicCode] = {
    kind: topic.code for topic in INPUTS if topic.code is not None for kind in topic.events
}
_time = time.time


@dataclass(frozen=True)
class Identity:
    """Who the records belong to: the run, and this process's rank in it."""

    run_id: str
    team: str
    project: str
    rank: int = 0


@dataclass(slots=True)
class _Pending:
    seq: int
    topic: TopicCode
    payload: bytes
    segment: int
    """The spool segment holding the record, ``_NOT_SPOOLED`` when it is in memory only."""


@dataclass(frozen=True, kw_only=True)
class TransportStats:
    """A transport's point figures at one moment (``Transport.stats()``).

    Every point logged is accepted, refused as overflow, or rejected by the run before it was offered;
    an accepted point is still buffered, packed into a record, or rejected when packed.
    """

    accepted_points: int
    """Points ``offer_points`` took into the buffer."""
    buffered_points: int
    """Accepted points not packed into records yet."""
    overflow_points: int
    """Points ``offer_points`` refused because the buffer held ``max_buffered_points`` already."""
    rejected_points: int
    """Points refused as bad input: a key or value ``check_points`` refuses (in the caller or when
    packed), or a step the run's step rule refuses."""
    failed_sends: int
    """Kafka deliveries that failed (each record is sent again)."""
    spool_errors: int = 0
    """Spool writes that failed (a full disk); the records went on from memory."""
    dropped_records: int = 0
    """Records lost because neither the spool nor the memory budget could hold them."""
    oversized_records: int = 0
    """Records skipped as too large for Kafka: over ``max_record_bytes`` with nothing to cut them by, or
    refused by the broker (its ``message.max.bytes`` below ``max_record_bytes``)."""


@dataclass(frozen=True, kw_only=True)
class DeliveryReport:
    """What ``close()`` left undelivered, and the points that never became records.

    ``spool_path`` holds the undelivered records for ``runstream sync``.
    """

    pending_records: int
    overflow_points: int
    """Points refused because the buffer was full (``TransportStats.overflow_points``)."""
    rejected_points: int
    """Points refused as bad input (``TransportStats.rejected_points``)."""
    failed_sends: int
    spool_path: str | None = None
    spool_errors: int = 0
    """Spool writes that failed (``TransportStats.spool_errors``)."""
    dropped_records: int = 0
    """Records lost: neither the spool nor memory could hold them, or they were still in memory only
    (not spooled, not delivered) when the run ended."""
    oversized_records: int = 0
    """Records skipped as too large for Kafka (``TransportStats.oversized_records``)."""
    rejected_entries: int = 0
    """Params, tags and summary values refused as bad input (the run counts them: they are no points)."""

    @property
    def complete(self) -> bool:
        """Everything accepted was delivered: nothing was lost to a full buffer, a full disk or Kafka's size limit."""
        lost = self.overflow_points + self.dropped_records + self.oversized_records
        return self.pending_records == 0 and lost == 0


class Transport:
    """Owns one producer's inbox, spool and Kafka sender, the thread that moves records along,
    and the count of every point offered to it."""

    def __init__(
        self,
        settings: Settings,
        identity: Identity,
        *,
        spool_dir: Path | None,
        online: bool = True,
        sender_factory: Callable[[Settings], RecordSender] = kafka_sender,
        heartbeat: Callable[[], Event] | None = None,
    ) -> None:
        self._settings = settings
        self._warned = WarnOnce(log)  # first: everything below may warn; called from the sender thread and the run's
        self._topic_names = {code: settings.topics.of_code(code) for code in TopicCode}
        self._identity = identity
        self._key = identity.run_id.encode()
        self._online = online
        self._sender_factory = sender_factory
        self._heartbeat = heartbeat
        self.producer_id = uuid.uuid4().hex
        self._inbox: collections.deque[Any] = collections.deque()
        """Rows ``(step, time_s, keys, values)`` and events, in the order they were offered."""
        self._inbox_append = self._inbox.append
        # Point counts: the first three written by user threads, packed ones by the sender thread.
        self._accepted_points = 0
        self._overflow_points = 0
        self._rejected_in_caller = 0
        self._packed_points = 0
        self._max_buffered = settings.max_buffered_points
        self._record_points = settings.max_points_per_record
        self._wake_at = self._record_points
        self._wire_version = settings.wire_version
        self._packer: ColumnPacker | BinaryPacker = (
            BinaryPacker(self._warn_once_fields, self._record_points)
            if self._wire_version == 2
            else ColumnPacker(self._warn_once_fields)
        )
        self._seq = 0
        self._packing = False
        self._spool = self._open_spool(spool_dir)
        self._segment_unacked: collections.Counter[int] = collections.Counter()
        """Records not acknowledged yet, by spool segment (``_NOT_SPOOLED``: kept in memory only)."""
        self._unflushed: collections.deque[tuple[_Pending, bool]] = collections.deque()
        """Records appended to the spool and maybe not written yet, with whether they are also in memory."""
        self._spool_down = False
        self._spool_retry_at = 0.0
        self._spool_errors = 0
        self._dropped_records = 0
        self._oversized_records = 0
        self._max_record_bytes = settings.max_record_bytes
        self._unsent: collections.deque[_Pending] = collections.deque()
        self._unsent_bytes = 0
        """Bytes of the records in ``_unsent`` and ``_held``."""
        self._spilled: SpoolCursor | None = None
        self._spill_end_seq: int | None = None
        """The last record the cursor may read when the spool failed while it was reading."""
        self._held: collections.deque[_Pending] = collections.deque()
        """Records kept in memory (spool down) that follow records the cursor has still to read."""
        self._retry: collections.deque[_Pending] = collections.deque()
        self._in_flight: dict[int, _Pending] = {}
        """Records handed to Kafka, by send (a record cut again after a refusal goes as several sends)."""
        self._sends = itertools.count()
        self._in_flight_bytes = 0
        self._acks: collections.deque[int] = collections.deque()
        self._failures: collections.deque[int] = collections.deque()
        self._refusals: collections.deque[tuple[int, int]] = collections.deque()
        """(send, producer generation) of records Kafka refused as too large."""
        self._generation = 0
        """Counts the Kafka producers made: one that refused a record as too large is replaced."""
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._close_timeout = settings.finish_timeout_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender: RecordSender | None = None
        self._failed_sends = 0
        self._thread = threading.Thread(target=self._loop, name=f"runstream-sender-{identity.run_id[:8]}", daemon=True)

    @property
    def spool_path(self) -> Path | None:
        return self._spool.directory if self._spool is not None else None

    # -- the run's calls -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def offer_points(self, step: int, keys: tuple[Any, ...], values: tuple[Number, ...]) -> bool:
        """Take one row of points logged at ``step``: O(1), an append and a few counts.

        ``values`` are plain floats and ints; keys and int ranges go through ``check_points`` when
        the row is packed. A row that would take the buffer past ``max_buffered_points`` is refused
        whole and counted as overflow (False).
        """
        n = len(keys)
        accepted = self._accepted_points + n
        if accepted - self._packed_points > self._max_buffered:
            self._overflow_points += n
            self._warn_once_fields(
                "buffer-full", "point buffer full; points refused as overflow", limit=self._max_buffered
            )
            return False
        if n:
            self._accepted_points = accepted
            self._inbox_append((step, _time(), keys, values))
            if accepted >= self._wake_at:  # a record's worth more is waiting: pack before the interval ends
                self._wake_at = accepted + self._record_points
                self._wake.set()
        return True

    def check_points(self, keys: Sequence[Any], values: Sequence[Any]) -> tuple[tuple[str, ...], tuple[Number, ...]]:
        """Run ``check_points`` in the caller, for a row that is not all plain numbers (its values
        are converted now: a tensor could change later). The points refused count as rejected."""
        kept_keys, kept_values = check_points(keys, values, self._warn_once_fields)
        self._rejected_in_caller += len(keys) - len(kept_keys)
        return kept_keys, kept_values

    def reject_points(self, n: int) -> None:
        """Count ``n`` points the run refused as bad input (its step rule) without offering them."""
        self._rejected_in_caller += n

    def publish(self, event: Event) -> None:
        """Queue an event; it follows every point offered before. Its producer id and sequence
        number are set when it is packed."""
        self._inbox_append(event)
        self._wake.set()

    def stats(self) -> TransportStats:
        """The point figures so far; while the sender thread works, each is current but they are not
        read at one instant."""
        accepted = self._accepted_points
        return TransportStats(
            accepted_points=accepted,
            buffered_points=accepted - self._packed_points,
            overflow_points=self._overflow_points,
            rejected_points=self._rejected_in_caller + self._packer.rejected,
            failed_sends=self._failed_sends,
            spool_errors=self._spool_errors,
            dropped_records=self._dropped_records,
            oversized_records=self._oversized_records,
        )

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is on disk and, when online, acknowledged by Kafka."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            self._wake.set()
            if self._settled():
                return True
            time.sleep(0.01)
        return self._settled()

    def close(self, timeout: float) -> DeliveryReport:
        """Pack and send what is queued, waiting at most ``timeout`` seconds, and stop the thread."""
        self._close_timeout = timeout
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 5.0)
        in_memory_only = max(0, self._segment_unacked[_NOT_SPOOLED])  # gone with the process
        pending = self._pending_records() - in_memory_only
        stats = self.stats()
        return DeliveryReport(
            pending_records=pending,
            overflow_points=stats.overflow_points,
            rejected_points=stats.rejected_points,
            failed_sends=stats.failed_sends,
            spool_path=str(self.spool_path) if pending and self.spool_path is not None else None,
            spool_errors=stats.spool_errors,
            dropped_records=stats.dropped_records + in_memory_only,
            oversized_records=stats.oversized_records,
        )

    # -- sender thread -------------------------------------------------------------------
    def _loop(self) -> None:
        interval = self._settings.flush_interval_s
        next_heartbeat = time.monotonic() + self._settings.heartbeat_interval_s
        deadline: float | None = None
        while True:
            # While stopping, poll quickly: acknowledgements arrive on kafka-python's thread.
            self._wake.wait(0.02 if self._stopping.is_set() else interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            if stopping and deadline is None:
                deadline = time.monotonic() + self._close_timeout
            if self._heartbeat is not None and not stopping and time.monotonic() >= next_heartbeat:
                self.publish(self._heartbeat())
                next_heartbeat = time.monotonic() + self._settings.heartbeat_interval_s
            try:
                self._step()
            except Exception as exc:  # the sender must survive anything
                self._warn_once("step", "sender step failed; will retry", exc)
            if stopping and (self._settled() or (deadline is not None and time.monotonic() >= deadline)):
                break
        self._shutdown(deadline)

    def _step(self) -> None:
        self._pack()
        self._settle_acks()
        if self._online and time.monotonic() >= self._retry_at:
            self._send()

    def _settled(self) -> bool:
        if self._packing or self._inbox or self._accepted_points > self._packed_points:
            return False
        if not self._online:
            return True
        return not (
            self._unsent
            or self._held
            or self._retry
            or self._spilled
            or self._in_flight
            or self._acks
            or self._refusals
        )

    def _pending_records(self) -> int:
        """Records kept (in the spool or in memory) and not acknowledged by Kafka yet."""
        return sum(self._segment_unacked.values())

    # packing: inbox -> numbered records -> spool (+ memory queue while Kafka keeps up)
    def _pack(self) -> None:
        self._packing = True  # what leaves the inbox is in no queue until packed: flush() must wait
        try:
            inbox, packer = self._inbox, self._packer
            limit = self._record_points
            while inbox:
                item = inbox.popleft()
                if type(item) is tuple:
                    self._packed_points += len(item[3])
                    packer.add(item)
                    if len(packer) >= limit:
                        self._emit_points()
                else:
                    self._emit_points()
                    self._emit_event(item)
            self._emit_points()
            self._flush_spool()
        finally:
            self._packing = False

    def _emit_points(self) -> None:
        packer = self._packer
        if isinstance(packer, BinaryPacker):
            ident = self._identity
            for record in packer.take():
                event = record.build(
                    producer_id=self.producer_id,
                    seq=self._seq,
                    rank=ident.rank,
                    run_id=ident.run_id,
                    team=ident.team,
                    project=ident.project,
                )
                self._emit(TopicCode.METRICS, event)
            return
        columns = packer.take()
        size = self._record_points
        for start in range(0, len(columns), size):
            self._emit(TopicCode.METRICS, self._metric_batch(columns, start, start + size))

    def _emit_event(self, event: Event) -> None:
        """Number and emit an event published by the run (in wire format v2, a hardware sample as binary columns)."""
        parts: list[Any] = (
            to_columns(event) if self._wire_version == 2 and isinstance(event, HardwareBatch) else [event]
        )
        for part in parts:
            stamped = msgspec.structs.replace(part, producer_id=self.producer_id, seq=self._seq)
            self._emit(_TOPIC_OF[type(part)], stamped)

    def _metric_batch(self, columns: PointColumns, start: int, stop: int) -> MetricBatch:
        ident = self._identity
        return MetricBatch(
            producer_id=self.producer_id,
            seq=self._seq,
            rank=ident.rank,
            run_id=ident.run_id,
            team=ident.team,
            project=ident.project,
            keys=columns.keys[start:stop],
            steps=columns.steps[start:stop],
            ts_ms=columns.ts_ms[start:stop],
            values=columns.values[start:stop],
        )

    def _emit(self, topic: TopicCode, event: Event) -> None:
        """Number, spool and queue one record; ``event`` carries the next sequence number already."""
        payload = encode_event(event)
        if len(payload) > self._max_record_bytes:
            self._emit_parts(event, len(payload))
            return
        seq = self._seq
        self._seq += 1
        pending = _Pending(seq, topic, payload, _NOT_SPOOLED)
        spool = self._writable_spool()
        if spool is not None:
            try:
                segment, offset = spool.append(seq, topic, pending.payload)
            except OSError as exc:
                self._spool_failed(exc)
            else:
                pending.segment = segment
                self._spooled(pending, offset)
                if spool.pending_bytes >= _SPOOL_FLUSH_BYTES:
                    self._flush_spool()
                return
        self._segment_unacked[_NOT_SPOOLED] += 1
        self._keep_in_memory(pending)

    def _emit_parts(self, event: Event, size: int) -> None:
        """An event over ``max_record_bytes`` goes as several records, each with a sequence number of its own."""
        parts = split_event(event, self._max_record_bytes, size)
        if parts is None:
            self._oversized_records += 1
            self._warn_once_fields(
                f"oversized:{type(event).__name__}",
                "record too large for Kafka and nothing to cut it by; skipped",
                event_type=type(event).__name__,
                size=size,
                max_record_bytes=self._max_record_bytes,
            )
            return
        for part in parts:
            self._emit(_TOPIC_OF[type(part)], msgspec.structs.replace(part, seq=self._seq))

    def _spooled(self, pending: _Pending, offset: int) -> None:
        """A record appended to the spool: it waits in memory for Kafka too, unless memory is full
        (Kafka behind) or the run is offline; then the spool is where it is read back from."""
        assert self._spool is not None
        self._segment_unacked[pending.segment] += 1
        in_memory = self._online and self._spilled is None and self._fits_in_memory(len(pending.payload))
        self._unflushed.append((pending, in_memory))
        if in_memory:
            self._unsent.append(pending)
            self._unsent_bytes += len(pending.payload)
        elif self._online and self._spilled is None:
            self._warn_once_fields(
                "spill", "Kafka is behind; records wait in the spool on disk", spool=str(self._spool.directory)
            )
            self._spilled = SpoolCursor(self._spool.directory, pending.segment, offset)

    def _keep_in_memory(self, pending: _Pending) -> None:
        """A record the spool does not hold waits in memory for Kafka if the budget allows; else it is dropped.
        A run's lifecycle events (start, updates, heartbeats, end: few and small) are always kept."""
        if not self._online:
            self._drop(pending, "drop-offline", "offline run and the spool cannot be written; records dropped")
        elif pending.topic is not TopicCode.RUNS and not self._fits_in_memory(len(pending.payload)):
            self._drop(pending, "drop", "the spool cannot be written and Kafka is behind; records dropped")
        else:
            (self._unsent if self._spilled is None else self._held).append(pending)
            self._unsent_bytes += len(pending.payload)

    def _drop(self, pending: _Pending, kind: str, message: str) -> None:
        self._segment_unacked[pending.segment] -= 1
        self._dropped_records += 1
        self._warn_once_fields(kind, message)

    # the spool's failures: the records it did not write stay in memory, and the disk is tried again later
    def _writable_spool(self) -> SpoolWriter | None:
        if self._spool is None:
            return None
        if self._spool_down:
            # Back to the disk only once nothing waits there or in memory behind it, to keep records in order.
            if time.monotonic() < self._spool_retry_at or self._spilled is not None or self._held:
                return None
            self._spool_down = False
            self._spill_end_seq = None
        return self._spool

    def _flush_spool(self) -> None:
        if self._spool is None or self._spool_down:
            return
        try:
            self._spool.flush()
        except OSError as exc:
            self._spool_failed(exc)
        else:
            self._unflushed.clear()

    def _spool_failed(self, exc: OSError) -> None:
        """The spool wrote nothing after ``durable_seq``: such records still only on disk are kept in memory
        (or dropped), and the spool is left alone for ``_SPOOL_RETRY_S``."""
        assert self._spool is not None
        self._spool_errors += 1
        self._warn_once("spool-write", "spool write failed; records go on to Kafka from memory (max_unsent_bytes)", exc)
        self._spool_down = True
        self._spool_retry_at = time.monotonic() + _SPOOL_RETRY_S
        durable = self._spool.durable_seq
        if self._spilled is not None:
            self._spill_end_seq = durable  # what the cursor finds beyond it is kept in memory now
        for pending, in_memory in self._unflushed:
            if pending.seq <= durable:
                continue
            self._segment_unacked[pending.segment] -= 1
            self._segment_unacked[_NOT_SPOOLED] += 1
            pending.segment = _NOT_SPOOLED
            if not in_memory:  # (one in memory is in _unsent already: nothing is sent while packing)
                self._keep_in_memory(pending)
        self._unflushed.clear()

    def _fits_in_memory(self, size: int) -> bool:
        """Records waiting for Kafka and records in flight share one memory budget."""
        return self._unsent_bytes + self._in_flight_bytes + size <= self._settings.max_unsent_bytes

    # acknowledgements: kafka-python's thread queues them, this thread applies them
    def _settle_acks(self) -> None:
        while self._acks:
            pending = self._in_flight.pop(self._acks.popleft(), None)
            if pending is not None:
                self._in_flight_bytes -= len(pending.payload)
                self._segment_unacked[pending.segment] -= 1
        while self._failures:
            pending = self._in_flight.pop(self._failures.popleft(), None)
            if pending is not None:
                self._in_flight_bytes -= len(pending.payload)
                self._retry.append(pending)
                self._back_off()
        refused: list[_Pending] = []
        current = False
        while self._refusals:
            send, generation = self._refusals.popleft()
            pending = self._in_flight.pop(send, None)
            if pending is not None:
                self._in_flight_bytes -= len(pending.payload)
                refused.append(pending)
                current = current or generation == self._generation
        if refused:
            self._settle_refusals(refused, current)
        self._delete_acked_segments()

    def _delete_acked_segments(self) -> None:
        if self._spool is None:
            return
        current = self._spool.segment
        done = [
            seg for seg, unacked in self._segment_unacked.items() if unacked <= 0 and seg not in (current, _NOT_SPOOLED)
        ]
        for segment in done:
            del self._segment_unacked[segment]
            try:
                self._spool.delete_segment(segment)
            except OSError as exc:
                self._warn_once("spool-delete", "could not delete a delivered spool segment", exc)

    # sending: retries first, then records in memory, then records read back from the spool
    def _send(self) -> None:
        sender = self._ensure_sender()
        if sender is None:
            return
        budget = self._settings.max_unsent_bytes
        for queue in (self._retry, self._unsent):
            while queue and self._in_flight_bytes < budget:
                if not self._send_one(sender, queue[0]):
                    return
                pending = queue.popleft()
                if queue is self._unsent:
                    self._unsent_bytes -= len(pending.payload)
        while self._spilled is not None and not self._retry and self._in_flight_bytes < budget:
            records = self._spilled.read(_SEND_BATCH)
            end = self._spill_end_seq
            if end is not None and records and records[-1].seq > end:  # cut off by a failed spool write
                records = [record for record in records if record.seq <= end]
            for i, record in enumerate(records):
                pending = _Pending(record.seq, record.topic, record.payload, record.segment)
                if not self._send_one(sender, pending):
                    self._retry.extend(
                        _Pending(r.seq, r.topic, r.payload, r.segment) for r in records[i:]
                    )  # keep order: resend these before reading further
                    return
            if len(records) < _SEND_BATCH:
                self._spilled = None  # caught up with the writer: back to sending from memory
                self._unsent.extend(self._held)  # what was kept in memory meanwhile comes next
                self._held.clear()
                log.info("spool replayed; sending from memory again", run_id=self._identity.run_id)

    def _send_one(self, sender: RecordSender, pending: _Pending) -> bool:
        try:
            future = sender.send(self._topic_names[pending.topic], value=pending.payload, key=self._key)
        except Exception as exc:
            if too_large(exc):  # it would never go: the queue moves on without it
                self._skip_oversized(pending)
                self._warn_refused(exc)
                return True
            self._warn_once("send", "Kafka send failed; records stay queued and spooled", exc)
            self._back_off()
            return False
        send = next(self._sends)
        self._in_flight[send] = pending
        self._in_flight_bytes += len(pending.payload)
        future.add_callback(self._delivered, send)
        future.add_errback(self._failed, send, self._generation)
        self._backoff_s = 0.0
        return True

    def _delivered(self, send: int, _metadata: Any) -> None:
        self._acks.append(send)  # on kafka-python's thread: deque appends are thread-safe

    def _failed(self, send: int, generation: int, exc: BaseException) -> None:
        if too_large(exc):
            self._refusals.append((send, generation))  # settled on the sender thread
            self._wake.set()
            return
        self._failed_sends += 1
        self._failures.append(send)
        self._warn_once("delivery", "Kafka delivery failed; record will be sent again", exc)
        self._wake.set()

    def _settle_refusals(self, refused: list[_Pending], by_current_producer: bool) -> None:
        """Records the broker refused as too large: its ``message.max.bytes`` is below ``max_record_bytes``.

        kafka-python's idempotent producer fails every later record with the same error once the broker
        refuses one, so that producer is replaced, and records are cut to half the largest one refused from
        then on (not below 64 KiB). Refused records over that are cut into parts sent under producer ids of
        their own (as ``runstream sync`` does); the others, refused only because their producer had stopped,
        are sent again. A record refused when records cannot be cut smaller, or with nothing to cut it by,
        is skipped and counted as ``oversized_records``.
        """
        if by_current_producer:
            largest = max(refused, key=lambda pending: len(pending.payload))
            limit = max(_MIN_RECORD_BYTES, min(self._max_record_bytes, len(largest.payload) // 2))
            if limit == self._max_record_bytes:  # no smaller cut left: this one cannot go
                refused.remove(largest)
                self._skip_oversized(largest)
            self._max_record_bytes = limit
            self._replace_sender()
            self._warn_once_fields(
                "too-large",
                "Kafka refused a record as too large: its message.max.bytes is below RUNSTREAM_MAX_RECORD_BYTES; "
                "records are cut smaller from now on",
                max_record_bytes=limit,
            )
        again: list[_Pending] = []
        for pending in refused:
            if len(pending.payload) <= self._max_record_bytes:
                self._failed_sends += 1
                again.append(pending)
                continue
            parts = split_for_replay(decode_event(pending.payload), self._max_record_bytes, len(pending.payload))
            if parts is None:
                self._skip_oversized(pending)
                continue
            self._segment_unacked[pending.segment] += len(parts) - 1  # the segment goes once all parts are sent
            again.extend(_Pending(pending.seq, pending.topic, encode_event(part), pending.segment) for part in parts)
        self._retry.extendleft(reversed(again))  # before anything newer

    def _skip_oversized(self, pending: _Pending) -> None:
        self._segment_unacked[pending.segment] -= 1
        self._oversized_records += 1

    def _replace_sender(self) -> None:
        sender, self._sender = self._sender, None
        self._generation += 1
        if sender is not None:
            try:
                sender.close(timeout=1.0)
            except Exception as exc:
                self._warn_once("close-refused", "closing the Kafka producer that refused a record failed", exc)

    def _warn_refused(self, exc: BaseException) -> None:
        self._warn_once(
            "too-large-send",
            "Kafka's client refuses a record as larger than its max_request_size; skipped",
            exc,
        )

    def _back_off(self) -> None:
        self._backoff_s = min(max(self._backoff_s * 2, 0.5), _MAX_BACKOFF_S)
        self._retry_at = time.monotonic() + self._backoff_s

    def _ensure_sender(self) -> RecordSender | None:
        if self._sender is None:
            try:
                self._sender = self._sender_factory(self._settings)
            except Exception as exc:
                self._warn_once("connect", "Kafka unreachable; events wait in the spool", exc)
                self._back_off()
                return None
        return self._sender

    def _shutdown(self, deadline: float | None) -> None:
        remaining = max(0.0, (deadline or time.monotonic()) - time.monotonic())
        if self._sender is not None:
            try:
                self._sender.flush(timeout=remaining)
                self._sender.close(timeout=min(remaining, 5.0))
            except Exception as exc:
                self._warn_once("close", "Kafka producer close failed", exc)
            self._settle_acks()
        if self._spool is not None:
            delivered = self._online and self._pending_records() == 0 and not self._inbox
            try:
                self._spool.close(remove=delivered)
            except OSError as exc:
                self._warn_once("spool-close", "spool close failed", exc)

    def _open_spool(self, directory: Path | None) -> SpoolWriter | None:
        if directory is None:
            return None
        try:
            return SpoolWriter(directory / self.producer_id, self._settings.spool_segment_bytes)
        except OSError as exc:
            self._warn_once("spool-open", "cannot create the spool; records kept in memory only", exc)
            return None

    def _warn_once(self, kind: str, message: str, exc: BaseException) -> None:
        self._warn_once_fields(kind, message, error=repr(exc))

    def _warn_once_fields(self, kind: str, message: str, **fields: Any) -> None:
        self._warned(kind, message, run_id=self._identity.run_id, **fields)
