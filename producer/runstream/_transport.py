"""Background delivery of a run's events to Kafka.

The training thread only appends to memory; one daemon thread encodes records and hands them to
kafka-python. Nothing here raises into user code: failures are counted and logged once per kind.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from runstream._buffer import PointBuffer, PointColumns
from runstream._log import get_logger
from runstream.settings import Settings
from runstream_schemas.events import Event, MetricBatch, encode_event
from runstream_schemas.topics import Topics

log = get_logger("runstream.transport")


class RecordSender(Protocol):
    """The part of ``kafka.KafkaProducer`` the transport uses (a boundary tests may fake)."""

    def send(self, topic: str, value: bytes, key: bytes) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


def kafka_sender(settings: Settings) -> RecordSender:
    """A kafka-python producer tuned for many small records of one run."""
    from kafka import KafkaProducer

    producer: RecordSender = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="runstream-sdk",
        acks="all",
        linger_ms=20,
        compression_type="lz4",
        max_block_ms=5000,
        request_timeout_ms=15000,
    )
    return producer


@dataclass(frozen=True)
class _Record:
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class DeliveryReport:
    """What ``close()`` could not deliver: records still pending and points dropped for lack of memory."""

    pending_records: int
    dropped_points: int
    failed_sends: int

    @property
    def complete(self) -> bool:
        return self.pending_records == 0 and self.dropped_points == 0


class Transport:
    """Owns one run's point buffer, its outbox of lifecycle events and the sender thread."""

    def __init__(
        self,
        settings: Settings,
        run_id: str,
        team: str,
        project: str,
        sender_factory: Callable[[Settings], RecordSender] = kafka_sender,
        heartbeat: Callable[[int], Event] | None = None,
    ) -> None:
        self._settings = settings
        self._topics = Topics(settings.topic_prefix)
        self._run_id, self._team, self._project = run_id, team, project
        self._key = run_id.encode()
        self._sender_factory = sender_factory
        self._heartbeat = heartbeat
        self.points = PointBuffer(settings.max_buffered_points)
        self.producer_id = uuid.uuid4().hex
        self._seq = itertools.count()
        self._outbox: collections.deque[_Record] = collections.deque()
        self._retry: collections.deque[_Record] = collections.deque()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._close_timeout = settings.finish_timeout_s
        self._order_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender: RecordSender | None = None
        self._warned: set[str] = set()
        self.failed_sends = 0
        self._thread = threading.Thread(target=self._loop, name=f"runstream-sender-{run_id[:8]}", daemon=True)

    # -- called from the training thread -------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def publish(self, build: Callable[[int], Event]) -> None:
        """Queue a lifecycle event built with the next sequence number.

        Points buffered so far are packed first, so that sequence and send order both put the
        event after every point logged before it (a run's end follows its last metrics).
        """
        with self._order_lock:
            self._pack_points()
            self._outbox.append(_Record(self._topics.runs, self._key, encode_event(build(next(self._seq)))))
        self._wake.set()

    def nudge(self) -> None:
        """Ask the sender thread to send now rather than at the next interval."""
        self._wake.set()

    def close(self, timeout: float) -> DeliveryReport:
        """Send what is buffered, waiting at most ``timeout`` seconds, and stop the thread."""
        self._close_timeout = timeout
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return DeliveryReport(
            pending_records=len(self._outbox) + len(self._retry) + self._in_flight + (1 if len(self.points) else 0),
            dropped_points=self.points.dropped,
            failed_sends=self.failed_sends,
        )

    # -- sender thread -------------------------------------------------------------------
    def _loop(self) -> None:
        interval = self._settings.flush_interval_s
        next_heartbeat = time.monotonic() + self._settings.heartbeat_interval_s
        deadline: float | None = None
        while True:
            # While stopping, poll quickly: deliveries complete on kafka-python's thread.
            self._wake.wait(0.02 if self._stopping.is_set() else interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            if stopping and deadline is None:
                deadline = time.monotonic() + self._close_timeout
            if self._heartbeat is not None and time.monotonic() >= next_heartbeat and not stopping:
                self.publish(self._heartbeat)
                next_heartbeat = time.monotonic() + self._settings.heartbeat_interval_s
            try:
                self._pump()
            except Exception as exc:  # the sender must survive anything
                self._warn_once("pump", "sender step failed; will retry", exc)
            if stopping and (self._drained() or (deadline is not None and time.monotonic() >= deadline)):
                break
        self._shutdown(deadline)

    def _drained(self) -> bool:
        return not self._outbox and not self._retry and not len(self.points) and self._in_flight == 0

    def _pack_points(self) -> None:
        columns = self.points.swap()
        if len(columns):
            self._outbox.extend(self._metric_records(columns))

    def _pump(self) -> None:
        with self._order_lock:
            self._pack_points()
        if not self._outbox and not self._retry:
            return
        sender = self._ensure_sender()
        if sender is None:
            return
        for queue in (self._retry, self._outbox):
            while queue:
                record = queue[0]
                try:
                    future = sender.send(record.topic, value=record.value, key=record.key)
                except Exception as exc:
                    self._warn_once("send", "kafka send failed; records kept for retry", exc)
                    return
                queue.popleft()
                with self._in_flight_lock:
                    self._in_flight += 1
                future.add_callback(self._delivered)
                future.add_errback(self._failed, record)

    def _metric_records(self, columns: PointColumns) -> list[_Record]:
        size = self._settings.max_points_per_record
        records = []
        for start in range(0, len(columns), size):
            part = columns.slice(start, start + size)
            batch = MetricBatch(
                producer_id=self.producer_id,
                seq=next(self._seq),
                run_id=self._run_id,
                team=self._team,
                project=self._project,
                keys=part.keys,
                steps=part.steps,
                ts_ms=part.ts_ms,
                values=part.values,
            )
            records.append(_Record(self._topics.metrics, self._key, encode_event(batch)))
        return records

    def _delivered(self, _metadata: Any) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    def _failed(self, record: _Record, exc: BaseException) -> None:
        # Runs on kafka-python's I/O thread: requeue for the sender thread to try again.
        self.failed_sends += 1
        self._retry.append(record)
        with self._in_flight_lock:
            self._in_flight -= 1
        self._warn_once("delivery", "kafka delivery failed; record requeued", exc)
        self._wake.set()

    def _ensure_sender(self) -> RecordSender | None:
        if self._sender is None:
            try:
                self._sender = self._sender_factory(self._settings)
            except Exception as exc:
                self._warn_once("connect", "kafka unreachable; events stay buffered", exc)
                return None
        return self._sender

    def _shutdown(self, deadline: float | None) -> None:
        if self._sender is None:
            return
        remaining = max(0.0, (deadline or time.monotonic()) - time.monotonic())
        try:
            self._sender.flush(timeout=remaining)
            self._sender.close(timeout=min(remaining, 5.0))
        except Exception as exc:
            self._warn_once("close", "kafka producer close failed", exc)

    def _warn_once(self, kind: str, message: str, exc: BaseException) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, run_id=self._run_id, error=repr(exc))
