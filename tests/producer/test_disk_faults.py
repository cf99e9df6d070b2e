"""Disk faults: a runs directory that cannot be written, a spool whose writes fail. The run goes on
in memory, says so once, counts what happened, and never raises."""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from runstream import _spool as spool_module
from runstream import _transport as transport_module
from runstream._spool import SpoolWriter
from runstream.run import Run
from runstream.settings import Settings
from tests.producer.fixtures import DiskFillsUp, FakeSender, OutageSender, factory_for, outage_factory, unit_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, max_points_per_record=100)


def unwritable(tmp_path: Path) -> Path:
    """A runs directory that cannot be created, even by root: its parent is a regular file."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return blocker / "runs"


def test_an_unwritable_runs_dir_warns_once_and_the_run_goes_on_in_memory(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender()
    broken = settings.model_copy(update={"runs_dir": unwritable(tmp_path)})
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = Run(project="p", team="t", run_id="no-disk", settings=broken, sender_factory=factory_for(sender))
        for step in range(1000):
            run.log({"loss": float(step)}, step=step)
        report = run.finish()
    assert run.spool_path is None
    assert report.complete and report.pending_records == 0
    assert sender.points() == [("loss", s, float(s)) for s in range(1000)]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "cannot create the run's directory" in messages[0]  # one cause, told once


class FullDisk:
    """The spool's file boundary on a full disk: from the ``after``-th call on, flushing the spool to its
    file fails with ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int = 0) -> None:
        self.calls = 0
        self.after = after
        original = SpoolWriter.flush

        def flush(writer: SpoolWriter) -> None:
            self.calls += 1
            if self.calls > self.after:
                raise OSError(errno.ENOSPC, "No space left on device")
            original(writer)

        monkeypatch.setattr(SpoolWriter, "flush", flush)


def test_a_full_disk_does_not_stop_delivery_to_a_healthy_kafka(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullDisk(monkeypatch)
    sender = FakeSender()
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = Run(project="p", team="t", run_id="full-disk", settings=settings, sender_factory=factory_for(sender))
        for step in range(5000):
            run.log({"loss": float(step), "acc": 1.0}, step=step)
        assert run.flush(10)  # delivered although nothing reaches the disk
        report = run.finish()
    assert disk.calls >= 1
    assert report.complete and report.pending_records == 0 and report.dropped_records == 0
    assert report.spool_errors == 1  # the spool is tried again only after a pause
    assert sorted(sender.points()) == sorted(
        [("acc", s, 1.0) for s in range(5000)] + [("loss", s, float(s)) for s in range(5000)]
    )
    messages = [r.getMessage() for r in caplog.records]
    assert sum("spool write failed" in m for m in messages) == 1


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_disk_that_fills_while_kafka_is_down_loses_only_what_memory_cannot_hold_and_counts_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    small = settings.model_copy(update={"max_unsent_bytes": 64 * 1024, "spool_segment_bytes": 16 * 1024})
    monkeypatch.setattr(spool_module, "_write", DiskFillsUp(room=96 * 1024))
    sender = OutageSender()
    sender.down.set()
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = Run(project="p", team="t", settings=small, sender_factory=outage_factory(sender))
        transport = run._transport
        assert transport is not None
        for step in range(6000):  # ~110 records of ~1.8 kB: 64 kB in memory, 96 kB on disk, the rest nowhere
            run.log({"a": float(step), "b": -float(step)}, step=step)
        wait_until(lambda: not transport._inbox and transport.stats().buffered_points == 0)
        assert transport._unsent_bytes <= small.max_unsent_bytes  # memory stays bounded
        sender.down.clear()
        report = run.finish()
    emitted = transport._seq
    delivered = [e.seq for e in sender.events()]
    assert len(delivered) == len(set(delivered))  # nothing twice
    assert report.spool_errors == 1 and report.dropped_records > 0 and report.pending_records == 0
    assert len(delivered) + report.dropped_records == emitted  # every record delivered or counted lost
    assert {0, emitted - 1} <= set(delivered)  # the run's start and end are among them
    points = sender.points()
    everything = {("a", s, float(s)) for s in range(6000)} | {("b", s, -float(s)) for s in range(6000)}
    assert len(points) == len(set(points)) and set(points) < everything
    messages = [r.getMessage() for r in caplog.records]
    assert sum("spool write failed" in m for m in messages) == 1
    assert sum("records dropped" in m for m in messages) == 1
    assert sum("records were lost" in m for m in messages) == 1


def test_the_spool_is_used_again_after_a_pause(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport_module, "_SPOOL_RETRY_S", 0.0)  # tried again at the next record
    disk = DiskFillsUp(room=0)
    monkeypatch.setattr(spool_module, "_write", disk)
    sender = FakeSender()
    run = Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender))
    transport = run._transport
    assert transport is not None and transport._spool is not None
    assert run.flush(10)  # the run's start: not written, sent from memory
    assert transport.stats().spool_errors == 1 and transport._spool.durable_seq == -1
    disk.room = 1 << 30  # room again
    for step in range(1000):
        run.log({"loss": float(step)}, step=step)
    assert run.flush(10)
    assert transport._spool.durable_seq > 0  # written again
    report = run.finish()
    assert report.complete and report.spool_errors == 1 and report.dropped_records == 0
    assert sender.points() == [("loss", s, float(s)) for s in range(1000)]
