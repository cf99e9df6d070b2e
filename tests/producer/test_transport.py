"""Delivery under outages: records spill to the spool, come back in order, and log() never waits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from runstream._spool import read_spool, segment_paths
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.events import MetricBatch, RunEnd, RunStart, decode_event
from tests.producer.fixtures import BlockedSender, OutageSender, decoded, factory_for, outage_factory, unit_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, max_points_per_record=100, max_unsent_bytes=64 * 1024, spool_segment_bytes=16 * 1024)


def make_run(settings: Settings, factory: Any, **kwargs: Any) -> Run:
    return Run(project="p", team="t", settings=settings, sender_factory=factory, **kwargs)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_outage_spills_to_disk_and_replays_every_record_once_in_order(settings: Settings) -> None:
    sender = OutageSender()
    run = make_run(settings, outage_factory(sender))
    for step in range(500):
        run.log({"a": float(step), "b": -float(step)}, step=step)
    assert run.flush(10)
    sender.down.set()
    for step in range(500, 5000):  # ~90 records of ~1.8 kB: more than the 64 kB memory budget
        run.log({"a": float(step), "b": -float(step)}, step=step)
    spool, transport = run.spool_path, run._transport
    assert spool is not None and transport is not None
    wait_until(lambda: transport.stats().buffered_points == 0 and not transport._inbox)
    assert transport._unsent_bytes <= settings.max_unsent_bytes  # memory bounded, the rest is on disk
    spooled = [decoded(r.payload) for r in read_spool(spool)]
    assert {s for e in spooled if isinstance(e, MetricBatch) for s in e.steps} >= set(range(500, 5000))
    assert len(segment_paths(spool)) > 1
    sender.down.clear()
    report = run.finish()
    assert report.complete and report.pending_records == 0 and report.spool_path is None
    assert sorted(sender.points()) == sorted(
        [("a", s, float(s)) for s in range(5000)] + [("b", s, -float(s)) for s in range(5000)]
    )
    seqs = [decode_event(v).seq for _, _, v in sender.sent]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # replayed in order, each once
    assert not spool.exists()  # delivered spools are removed


def test_log_never_waits_on_the_network(settings: Settings) -> None:
    sender = BlockedSender()
    run = make_run(settings, factory_for(sender))
    assert sender.entered.wait(5)  # the sender thread is now stuck inside send()
    for step in range(20_000):
        run.log({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    # Every call returned while the network was still blocked: nothing in log() waits for it.
    assert not sender.release.is_set()
    assert run._transport is not None and run._transport.stats().accepted_points == 40_000
    sender.release.set()
    assert run.finish().complete
    assert len(sender.points()) == 40_000


def test_offline_mode_writes_the_spool_only(settings: Settings) -> None:
    def no_network(_: Settings) -> Any:
        raise AssertionError("offline runs never connect")

    run = make_run(settings, no_network, mode="offline", config={"lr": 0.1})
    for step in range(250):
        run.log({"loss": float(step)})
    report = run.finish()
    assert report.spool_path is not None
    events = [decoded(r.payload) for r in read_spool(Path(report.spool_path))]
    assert report.pending_records == len(events)  # every record waits in the spool
    assert isinstance(events[0], RunStart) and isinstance(events[-1], RunEnd)
    assert all(isinstance(e, MetricBatch) and len(e.keys) <= 100 for e in events[1:-1])
    assert [s for e in events if isinstance(e, MetricBatch) for s in e.steps] == list(range(250))


def test_memory_stays_bounded_when_the_point_buffer_is_full(settings: Settings) -> None:
    small = settings.model_copy(update={"max_buffered_points": 1000})
    sender = BlockedSender()
    run = make_run(small, factory_for(sender))
    transport = run._transport
    assert transport is not None
    transport._wake.clear()
    # The sender thread is stuck sending the run's start (after packing it), and kept from packing
    # afterwards: everything beyond 1,000 points is refused as overflow, not queued.
    assert sender.entered.wait(10)
    with transport_paused(transport):
        for step in range(300):
            run.log({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}, step=step)
        assert transport.stats().buffered_points == 1000
    sender.release.set()
    report = run.finish()
    assert report.overflow_points == 500
    assert len(sender.points()) == 1000


class transport_paused:
    """Holds the sender thread out of its packing step."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._pack = transport._pack

    def __enter__(self) -> None:
        self._transport._pack = lambda: None

    def __exit__(self, *exc: object) -> None:
        self._transport._pack = self._pack
