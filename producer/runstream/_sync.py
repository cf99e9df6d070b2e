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

from runstream._kafka import RecordSender, kafka_sender
from runstream._private import tighten, write_private
from runstream._spool import SEGMENT_SUFFIX, SYNCED_MARKER, ReadStats, read_spool, segment_paths
from runstream.settings import Settings
from runstream_core.errors import CommError, UsageError
from runstream_core.events import decode_event
from runstream_core.log import get_logger
from runstream_core.topics import Topics

log = get_logger("runstream.sync")

Progress = Callable[[int], None]


@dataclass
class SyncReport:
    producers: int = 0
    skipped: int = 0
    sent_records: int = 0
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
    topics = settings.topics
    try:
        for spool in todo:
            report.producers += 1
            tighten([spool, *segment_paths(spool)])  # written by a version that left them readable to all
            stats = ReadStats()
            ok = _send_spool(spool, sender, topics, stats, progress, timeout_s)
            report.corrupt_segments += stats.corrupt_segments
            if ok:
                report.sent_records += stats.records
                write_private(spool / SYNCED_MARKER, f"{stats.records} records at {time.time():.0f}\n".encode())
            else:
                report.failed.append(str(spool))
    finally:
        sender.close(timeout=5.0)
    return report


def _send_spool(
    spool: Path, sender: RecordSender, topics: Topics, stats: ReadStats, progress: Progress | None, timeout_s: float
) -> bool:
    outcome = _Outcome()
    for record in read_spool(spool, stats):
        key = _record_key(record.payload)
        if key is None:
            log.warning("spooled record cannot be decoded; skipped", spool=str(spool), seq=record.seq)
            continue
        future = sender.send(topics.of_code(record.topic), value=record.payload, key=key)
        outcome.expect()
        future.add_callback(outcome.acked)
        future.add_errback(outcome.failed)
        if progress is not None:
            progress(1)
    sender.flush(timeout=timeout_s)
    if not outcome.wait(timeout_s):
        log.error("sync did not complete", spool=str(spool), unacknowledged=outcome.waiting, errors=outcome.errors[:3])
        return False
    return True


def _record_key(payload: bytes) -> bytes | None:
    try:
        event: Any = decode_event(payload)
    except Exception:
        return None
    run_id = event.run_id if hasattr(event, "run_id") else event.run.run_id
    return str(run_id).encode()


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
            self.errors.append(repr(exc))
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.waiting <= 0, timeout_s)
            return self.waiting <= 0 and not self.errors
