"""``runstream sync``: send spooled runs (offline, or left behind by a crash or outage) to Kafka.

Replaying is idempotent: each record keeps the producer id and sequence number it was written
with, so the worker drops any it already stored; a producer directory whose records were all
acknowledged gets a ``synced`` marker and is skipped next time (``force`` sends it again anyway).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from runstream._kafka import RecordSender, kafka_sender, too_large
from runstream._private import tighten, write_private
from runstream._split import split_for_replay
from runstream._spool import SEGMENT_SUFFIX, SYNCED_MARKER, ReadStats, SpooledRecord, read_spool, segment_paths
from runstream.settings import Settings
from runstream_core.columns import to_batch
from runstream_core.errors import CommError, UsageError
from runstream_core.events import COLUMN_EVENTS, decode_event, encode_event
from runstream_core.log import get_logger

log = get_logger("runstream.sync")

Progress = Callable[[int], None]


@dataclass
class SyncReport:
    producers: int = 0
    skipped: int = 0
    """Spools skipped as synced already."""
    sent_records: int = 0
    """Spooled records sent (and acknowledged); one sent in parts counts once."""
    split_records: int = 0
    """Spooled records over ``max_record_bytes`` (an older version wrote them) sent in parts."""
    oversized_records: int = 0
    """Spooled records too large for Kafka, with nothing to cut them by: skipped."""
    corrupt_segments: int = 0
    failed: list[str] = field(default_factory=list)


def find_spools(paths: Iterable[Path]) -> list[Path]:
    """Producer spool directories (those holding ``*.seg`` files) at or under each path."""
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        if path.is_file() and path.suffix == SEGMENT_SUFFIX:
            found.add(path.parent.resolve())
            continue
        found.update(seg.parent.resolve() for seg in path.rglob(f"*{SEGMENT_SUFFIX}"))
    return sorted(found)


def is_synced(spool: Path) -> bool:
    """True when a sync acknowledged every record and nothing was written after it."""
    marker = spool / SYNCED_MARKER
    if not marker.exists():
        return False
    mtime = marker.stat().st_mtime
    return all(seg.stat().st_mtime <= mtime for seg in segment_paths(spool))


def count_records(spools: Iterable[Path]) -> int:
    return sum(sum(1 for _ in read_spool(spool)) for spool in spools)


def sync(
    spools: list[Path],
    settings: Settings,
    *,
    force: bool = False,
    progress: Progress | None = None,
    sender_factory: Callable[[Settings], RecordSender] = kafka_sender,
    timeout_s: float = 120.0,
) -> SyncReport:
    """Send every record of ``spools`` in order, wait for Kafka's acknowledgements, mark them synced."""
    report = SyncReport()
    todo = []
    for spool in spools:
        if not force and is_synced(spool):
            report.skipped += 1
        else:
            todo.append(spool)
    if not todo:
        return report
    try:
        sender = sender_factory(settings)
    except Exception as exc:
        raise CommError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        for spool in todo:
            report.producers += 1
            tighten([spool, *segment_paths(spool)])  # written by a version that left them readable to all
            replay = _Replay(spool, sender, settings, progress)
            ok = replay.run(timeout_s)
            report.corrupt_segments += replay.stats.corrupt_segments
            report.split_records += replay.split
            report.oversized_records += replay.oversized
            if ok:
                report.sent_records += replay.sent
                write_private(spool / SYNCED_MARKER, f"{replay.sent} records at {time.time():.0f}\n".encode())
            else:
                report.failed.append(str(spool))
    finally:
        sender.close(timeout=5.0)
    return report


class _Replay:
    """Sends one producer's spool in order and waits for Kafka's answers.

    A record over ``max_record_bytes`` (written by an older version) is sent in parts when it is a
    batch of points or a run's start or update (see ``_split``), and skipped, with a warning, when
    nothing can cut it; neither stops the spool. A record the broker refuses as too large (its
    ``message.max.bytes`` below ``max_record_bytes``) fails the spool: it stays unsynced, to be sent
    again once the setting is lowered. Records are sent in the wire format they were spooled in, but
    with ``wire_version`` 1 (a worker older than wire format v2) binary-column batches are sent as the
    list batches of the same points, producer id and sequence number.
    """

    def __init__(self, spool: Path, sender: RecordSender, settings: Settings, progress: Progress | None) -> None:
        self._spool = spool
        self._sender = sender
        self._topics = settings.topics
        self._max_bytes = settings.max_record_bytes
        self._wire_version = settings.wire_version
        self._progress = progress
        self._outcome = _Outcome()
        self.stats = ReadStats()
        self.sent = 0
        self.split = 0
        self.oversized = 0

    def run(self, timeout_s: float) -> bool:
        complete = all(self._send(record) for record in read_spool(self._spool, self.stats))
        try:
            self._sender.flush(timeout=timeout_s)
        except Exception as exc:
            log.error("Kafka flush failed", spool=str(self._spool), error=repr(exc))
        acknowledged = self._outcome.wait(timeout_s)
        if not (complete and acknowledged):
            outcome = self._outcome
            log.error(
                "sync did not complete",
                spool=str(self._spool),
                unacknowledged=outcome.waiting,
                errors=outcome.errors[:3],
            )
            return False
        return True

    def _send(self, record: SpooledRecord) -> bool:
        """Hand one spooled record to Kafka; False when Kafka cannot take anything (this spool stops)."""
        if self._progress is not None:
            self._progress(1)
        try:
            event: Any = decode_event(record.payload)
        except Exception:
            log.warning("spooled record cannot be decoded; skipped", spool=str(self._spool), seq=record.seq)
            return True
        payload = record.payload
        if self._wire_version == 1 and isinstance(event, COLUMN_EVENTS):
            try:
                event = to_batch(event)
                payload = encode_event(event)
            except msgspec.ValidationError as exc:  # the worker will dead-letter it with the reason
                log.warning("spooled record holds points out of bounds; sent as it is", seq=record.seq, error=str(exc))
        payloads = [payload]
        if len(payload) > self._max_bytes:
            parts = split_for_replay(event, self._max_bytes, len(payload))
            if parts is None:
                self._skip(record, type(event).__name__, "spooled record too large for Kafka and nothing to cut it by")
                return True
            payloads = [encode_event(part) for part in parts]
            self.split += 1
        key = str(event.run_id if hasattr(event, "run_id") else event.run.run_id).encode()
        for payload in payloads:
            try:
                future = self._sender.send(self._topics.of_code(record.topic), value=payload, key=key)
            except Exception as exc:
                if too_large(exc):
                    self._skip(record, type(event).__name__, "Kafka refused a spooled record as too large")
                    return True
                log.error("Kafka send failed; this spool stops here", spool=str(self._spool), error=repr(exc))
                return False
            self._outcome.expect()
            future.add_callback(self._outcome.acked)
            future.add_errback(self._outcome.failed)
        self.sent += 1
        return True

    def _skip(self, record: SpooledRecord, kind: str, message: str) -> None:
        self.oversized += 1
        log.warning(
            message + "; skipped",
            spool=str(self._spool),
            seq=record.seq,
            event_type=kind,
            size=len(record.payload),
            max_record_bytes=self._max_bytes,
        )


class _Outcome:
    """Counts acknowledgements arriving on kafka-python's thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.waiting = 0
        self.errors: list[str] = []

    def expect(self) -> None:
        with self._cond:
            self.waiting += 1

    def acked(self, _metadata: Any) -> None:
        with self._cond:
            self.waiting -= 1
            self._cond.notify_all()

    def failed(self, exc: BaseException) -> None:
        with self._cond:
            self.waiting -= 1
            if too_large(exc):  # the broker's limit is below max_record_bytes; its producer stops after this
                self.errors.append(
                    f"{exc!r}: Kafka refused a record as too large; set RUNSTREAM_MAX_RECORD_BYTES below the "
                    "broker's message.max.bytes and sync again"
                )
            else:
                self.errors.append(repr(exc))
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.waiting <= 0, timeout_s)
            return self.waiting <= 0 and not self.errors
