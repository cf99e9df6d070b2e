"""``runstream sync`` logic against a stand-in producer: order, torn tails, markers, --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream._spool import SYNCED_MARKER, read_spool, segment_paths
from runstream._sync import find_spools, is_synced, sync
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.columns import to_batch
from runstream_core.errors import UsageError
from runstream_core.events import MetricBatch, MetricColumns, RunEnd, RunStart, decode_event
from tests.producer.fixtures import FakeSender, factory_for


@pytest.fixture
def offline_run(tmp_path: Path) -> tuple[Settings, Path]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, runs_dir=tmp_path / "runs", hardware_interval_s=0, handle_sigterm=False, topic_prefix="s."
    )
    run = Run(project="p", team="t", run_id="offline-1", mode="offline", settings=settings)
    for step in range(300):
        run.log({"loss": float(step)})
    run.finish()
    return settings, settings.runs_dir / "offline-1"


def test_sync_sends_every_record_in_order_then_skips_unless_forced(offline_run: tuple[Settings, Path]) -> None:
    settings, run_dir = offline_run
    spools = find_spools([run_dir])
    assert len(spools) == 1
    sender = FakeSender()
    report = sync(spools, settings, sender_factory=factory_for(sender))
    events = sender.events()
    assert report.sent_records == len(events) and report.failed == []
    assert isinstance(events[0], RunStart) and isinstance(events[-1], RunEnd)
    assert [e.seq for e in events] == list(range(len(events)))
    assert [s for e in events if isinstance(e, MetricBatch) for s in e.steps] == list(range(300))
    assert {topic for topic, _, _ in sender.sent} == {"s.runs", "s.metrics"}
    assert all(key == b"offline-1" for _, key, _ in sender.sent)
    assert is_synced(spools[0]) and (spools[0] / SYNCED_MARKER).exists()

    again = FakeSender()
    assert sync(spools, settings, sender_factory=factory_for(again)).skipped == 1
    assert again.sent == []
    forced = FakeSender()
    assert sync(spools, settings, force=True, sender_factory=factory_for(forced)).sent_records == len(events)


def test_a_torn_spool_tail_sends_what_is_intact_and_says_so(offline_run: tuple[Settings, Path]) -> None:
    settings, run_dir = offline_run
    (spool,) = find_spools([run_dir])
    (segment,) = segment_paths(spool)
    segment.write_bytes(segment.read_bytes()[:-5])  # the run's end was being written when it died
    sender = FakeSender()
    report = sync([spool], settings, sender_factory=factory_for(sender))
    assert report.corrupt_segments == 1
    assert not any(isinstance(e, RunEnd) for e in sender.events())
    assert [s for e in sender.events() if isinstance(e, MetricBatch) for s in e.steps] == list(range(300))


def test_unacknowledged_records_leave_the_spool_unsynced(offline_run: tuple[Settings, Path]) -> None:
    settings, run_dir = offline_run
    spools = find_spools([run_dir])
    sender = FakeSender()
    sender.fail_next = 1
    report = sync(spools, settings, sender_factory=factory_for(sender), timeout_s=5)
    assert report.failed == [str(spools[0])]
    assert not is_synced(spools[0])


def test_missing_paths_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        find_spools([tmp_path / "missing"])


def test_sync_for_a_worker_older_than_wire_format_v2_sends_columns_as_lists(
    offline_run: tuple[Settings, Path],
) -> None:
    settings, run_dir = offline_run
    (spool,) = find_spools([run_dir])
    spooled = [decode_event(r.payload) for r in read_spool(spool)]
    assert any(isinstance(e, MetricColumns) for e in spooled)  # the run wrote wire format v2
    as_v2, as_v1 = FakeSender(), FakeSender()
    sync([spool], settings, force=True, sender_factory=factory_for(as_v2))
    v1 = settings.model_copy(update={"wire_version": 1})
    report = sync([spool], v1, force=True, sender_factory=factory_for(as_v1))
    assert report.sent_records == len(spooled) and report.split_records == 0
    assert [type(e) for e in as_v2.wire_events()] == [type(e) for e in spooled]  # sent as they were spooled
    sent = as_v1.wire_events()
    assert not any(isinstance(e, MetricColumns) for e in sent)
    assert sent == [to_batch(e) if isinstance(e, MetricColumns) else e for e in spooled]  # same ids and points
    assert [s for e in sent if isinstance(e, MetricBatch) for s in e.steps] == list(range(300))
