"""The boundary between a Run and its Transport: the calls it is made of, and the transport's point counts."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import time
from pathlib import Path

import numpy as np
import pytest

import runstream.run
from runstream._transport import DeliveryReport, Identity, Transport, TransportStats
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.events import MetricBatch, RunEnd, RunInfo, RunStart
from tests.producer.fixtures import FakeSender, factory_for, unit_settings

FIVE = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}
# What a Run may use of its Transport; everything else there is the transport's own.
BOUNDARY = {
    "start",
    "offer_points",
    "check_points",
    "reject_points",
    "publish",
    "flush",
    "close",
    "stats",
    "spool_path",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, finish_timeout_s=5, max_buffered_points=1000)


def make_transport(settings: Settings, sender: FakeSender, tmp_path: Path) -> Transport:
    return Transport(
        settings, Identity("run-1", "t", "p"), spool_dir=tmp_path / "spool", sender_factory=factory_for(sender)
    )


def test_the_transport_counts_overflow_and_rejected_points_apart(settings: Settings, tmp_path: Path) -> None:
    sender = FakeSender()
    transport = make_transport(settings, sender, tmp_path)  # not started: nothing is packed yet
    keys, values = tuple(FIVE), tuple(FIVE.values())
    assert transport.offer_points(0, ("ok", "bad\x00"), (1.0, 2.0))  # its bad key is found when packed
    taken = [transport.offer_points(step, keys, values) for step in range(1, 300)]
    assert taken == [True] * 199 + [False] * 100  # 2 + 199 * 5 = 997 points; a row is refused whole
    assert transport.offer_points(300, ("x", "y", "z"), (1.0, 2.0, 3.0))  # a smaller row still fits: 1000
    assert not transport.offer_points(301, ("w",), (1.0,))
    assert transport.offer_points(302, (), ())  # an empty row takes no room
    transport.reject_points(4)  # e.g. a step that went backwards, refused by the run
    assert transport.check_points(["q", 3, "r\n", "s"], [1.0, 2.0, 3.0, "text"]) == (("q",), (1.0,))
    assert transport.stats() == TransportStats(
        accepted_points=1000, buffered_points=1000, overflow_points=501, rejected_points=4 + 3, failed_sends=0
    )

    transport.start()
    report = transport.close(5.0)
    assert report == DeliveryReport(pending_records=0, overflow_points=501, rejected_points=8, failed_sends=0)
    assert not report.complete  # points were lost to a full buffer
    assert transport.stats() == TransportStats(
        accepted_points=1000, buffered_points=0, overflow_points=501, rejected_points=8, failed_sends=0
    )
    assert len(sender.points()) == 999


def test_room_freed_by_packing_is_offered_again(settings: Settings, tmp_path: Path) -> None:
    sender = FakeSender()
    transport = make_transport(settings, sender, tmp_path)
    keys, values = tuple(FIVE), tuple(FIVE.values())
    assert all(transport.offer_points(step, keys, values) for step in range(200))
    assert not transport.offer_points(200, keys, values)
    transport.start()
    assert transport.flush(5.0)
    assert transport.offer_points(201, keys, values)
    report = transport.close(5.0)
    assert (report.overflow_points, report.rejected_points, report.pending_records) == (5, 0, 0)
    assert transport.stats().accepted_points == 1005
    assert len(sender.points()) == 1005


def test_failed_sends_are_counted_in_the_figures(settings: Settings, tmp_path: Path) -> None:
    sender = FakeSender()
    sender.fail_next = 2
    transport = make_transport(settings, sender, tmp_path)
    transport.offer_points(0, ("loss",), (1.0,))
    transport.start()
    report = transport.close(5.0)
    assert report.complete and report.failed_sends == 2 and transport.stats().failed_sends == 2


def test_stats_are_a_read_only_snapshot(settings: Settings, tmp_path: Path) -> None:
    transport = make_transport(settings, FakeSender(), tmp_path)
    before = transport.stats()
    transport.offer_points(0, ("loss",), (1.0,))
    assert before.accepted_points == 0 and transport.stats().accepted_points == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.overflow_points = 1  # type: ignore[misc]


def test_published_events_are_stamped_in_the_order_they_were_offered(settings: Settings, tmp_path: Path) -> None:
    sender = FakeSender()
    transport = make_transport(settings, sender, tmp_path)
    info = RunInfo(run_id="run-1", team="t", project="p")
    transport.publish(RunStart(run=info))
    transport.offer_points(0, ("loss",), (1.0,))
    transport.publish(RunEnd(run=info, status="finished", ended_at_ms=1, step=0))  # type: ignore[arg-type]
    transport.start()
    assert transport.close(5.0).complete
    events = sender.events()
    assert [type(e) for e in events] == [RunStart, MetricBatch, RunEnd]
    assert [e.seq for e in events] == [0, 1, 2]
    assert {e.producer_id for e in events} == {transport.producer_id}
    assert [topic for topic, _, _ in sender.sent] == ["unit.runs", "unit.metrics", "unit.runs"]


def test_finish_reports_overflow_and_rejected_points_apart(settings: Settings) -> None:
    # The sender thread sleeps through the loop (long interval, no record's worth of points to wake it).
    quiet = settings.model_copy(update={"flush_interval_s": 60, "max_points_per_record": 100_000})
    sender = FakeSender()
    run = Run(project="p", team="t", settings=quiet, sender_factory=factory_for(sender))
    assert run.flush(5)  # the run's start is packed and sent
    time.sleep(0.5)  # the sender ends the loop round the flush woke, and waits again
    run.log({"ok": 1.0, "bad\x00": 2.0}, step=0)  # 2 accepted; the bad key is rejected when packed
    for step in range(1, 300):
        run.log(FIVE, step=step)  # 199 rows accepted (997 points), 100 refused: 500 overflow
    run.log({"late": 1.0}, step=5)  # backwards: 1 rejected by the step rule
    run.log({"text": "high", "np": np.float64(0.5)}, step=300)  # checked in the caller: 1 rejected, 1 accepted
    report = run.finish()
    assert (report.overflow_points, report.rejected_points, report.pending_records) == (500, 3, 0)
    assert not report.complete
    assert len(sender.points()) == 997


def test_the_run_uses_nothing_of_its_transport_but_the_boundary() -> None:
    tree = ast.parse(inspect.getsource(runstream.run))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "_transport"
    }
    assert used, "the run talks to its transport"
    assert used <= BOUNDARY
    public = {name for name, _ in inspect.getmembers(Transport) if not name.startswith("_")}
    assert public == BOUNDARY
