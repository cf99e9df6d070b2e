"""Records stay under Kafka's size limit: a record too large would block everything queued behind it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kafka.errors import MessageSizeTooLargeError

from runstream._spool import SpoolWriter
from runstream._sync import find_spools, sync
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.events import Heartbeat, MetricBatch, RunEnd, RunInfo, RunStart, RunStatus, encode_event
from runstream_core.topics import TopicCode
from tests.producer.fixtures import FakeSender, _Future, factory_for, unit_settings

KAFKA_MAX_REQUEST_SIZE = 1_048_576  # kafka-python's max_request_size default
WIDE = {f"{i:04d}".ljust(254, "k"): float(i) for i in range(4096)}  # 4,096 points, 254-character keys


class SizeCheckingSender(FakeSender):
    """kafka-python's own check: a record over ``max_request_size`` is refused by ``send()`` itself."""

    def __init__(self, max_request_size: int = KAFKA_MAX_REQUEST_SIZE) -> None:
        super().__init__()
        self.max_request_size = max_request_size
        self.refused = 0

    def send(self, topic: str, value: bytes, key: bytes) -> _Future:
        if len(value) + len(key) + 80 > self.max_request_size:
            self.refused += 1
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes when serialized")
        return super().send(topic, value, key)


class SmallBrokerSender(FakeSender):
    """A broker whose ``message.max.bytes`` is below the SDK's limit, through kafka-python's idempotent
    producer: once the broker refuses a record as too large, the producer fails every later record with
    that same error; a new producer works again."""

    def __init__(self, message_max_bytes: int) -> None:
        super().__init__()
        self.message_max_bytes = message_max_bytes
        self.refused = 0
        self.producers = 0
        self.fatal: Exception | None = None

    def connect(self, settings: Settings) -> SmallBrokerSender:
        self.producers += 1
        self.fatal = None
        return self

    def send(self, topic: str, value: bytes, key: bytes) -> _Future:
        if self.fatal is not None:
            return _Future(self.fatal)
        if len(value) > self.message_max_bytes:
            self.refused += 1
            self.fatal = MessageSizeTooLargeError("MESSAGE_SIZE_TOO_LARGE")
            return _Future(self.fatal)
        return super().send(topic, value, key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path)


def test_the_reported_record_is_over_kafkas_limit() -> None:
    batch = MetricBatch(
        producer_id="f" * 32,
        seq=1,
        run_id="r" * 32,
        team="t",
        project="p",
        keys=list(WIDE),
        steps=[0] * 4096,
        ts_ms=[1_700_000_000_000] * 4096,
        values=list(WIDE.values()),
    )
    assert len(encode_event(batch)) > KAFKA_MAX_REQUEST_SIZE


def test_a_wide_log_is_split_into_records_under_the_limit_and_nothing_waits_behind_it(
    settings: Settings,
) -> None:
    sender = SizeCheckingSender()
    run = Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender))
    run.log({"before": 1.0}, step=0)
    run.log(WIDE, step=1)
    for step in range(2, 100):
        run.log({"after": float(step)}, step=step)
    report = run.finish()
    assert report.complete and report.oversized_records == 0 and sender.refused == 0
    assert max(len(value) for _, _, value in sender.sent) <= settings.max_record_bytes
    expected = [("before", 0, 1.0)] + [(k, 1, v) for k, v in WIDE.items()]
    expected += [("after", s, float(s)) for s in range(2, 100)]
    assert sender.points() == expected
    seqs = [e.seq for e in sender.events()]
    assert seqs == list(range(len(seqs)))  # every part a record of its own


def test_a_smaller_limit_is_a_setting(settings: Settings) -> None:
    small = settings.model_copy(update={"max_record_bytes": 64 * 1024})
    sender = FakeSender()
    run = Run(project="p", team="t", settings=small, sender_factory=factory_for(sender))
    run.log(WIDE, step=0)
    assert run.finish().complete
    assert max(len(value) for _, _, value in sender.sent) <= 64 * 1024
    assert len([e for e in sender.events() if isinstance(e, MetricBatch)]) >= 18  # 1.1 MB in 64 kB records
    assert sorted(sender.points()) == sorted((k, 0, v) for k, v in WIDE.items())


def test_params_too_many_for_one_record_follow_the_start_in_updates(settings: Settings) -> None:
    config = {f"layer{i}": "x" * 1000 for i in range(2000)}  # 2 MB of params
    sender = FakeSender()
    run = Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender), config=config)
    assert run.finish().complete
    assert max(len(value) for _, _, value in sender.sent) <= settings.max_record_bytes
    events = sender.events()
    start = events[0]
    assert isinstance(start, RunStart)
    params = dict(start.params)
    for event in events[1:]:
        if hasattr(event, "params"):
            assert event.ts_ms == start.run.started_at_ms  # type: ignore[union-attr]
            params.update(event.params)  # type: ignore[union-attr]
    assert params == config


def test_records_a_broker_with_a_lower_limit_refuses_are_cut_smaller_and_nothing_is_lost(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broker = SmallBrokerSender(message_max_bytes=200_000)  # the broker's limit is below the SDK's
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = Run(project="p", team="t", settings=settings, sender_factory=broker.connect)
        run.log({"before": 1.0}, step=0)
        assert run.flush(10)
        run.log(WIDE, step=1)  # two records of ~560 kB: under max_record_bytes, over the broker's limit
        assert run.flush(20)
        for step in range(2, 50):
            run.log(WIDE if step == 10 else {"after": float(step)}, step=step)
        report = run.finish()
    assert report.complete and report.oversized_records == 0 and report.pending_records == 0
    assert broker.refused >= 2 and broker.producers >= 3  # each producer that saw a refusal was replaced
    wide = [(k, step, v) for step in (1, 10) for k, v in WIDE.items()]
    after = [("after", s, float(s)) for s in range(2, 50) if s != 10]
    points = broker.points()
    assert len(points) == len(set(points)) and sorted(points) == sorted([("before", 0, 1.0), *wide, *after])
    assert max(len(value) for _, _, value in broker.sent) <= 200_000
    parts = [e for e in broker.events() if isinstance(e, MetricBatch) and e.steps[0] == 1]
    assert len({(p.producer_id, p.seq) for p in parts}) == len(parts)  # told apart by the worker's dedup
    assert sum("message.max.bytes is below" in r.getMessage() for r in caplog.records) == 1


def test_a_record_that_cannot_be_cut_small_enough_is_skipped_and_counted(settings: Settings) -> None:
    broker = SmallBrokerSender(message_max_bytes=1000)  # below any record of 64 kB
    run = Run(project="p", team="t", settings=settings, sender_factory=broker.connect)
    run.log({f"k{i:05d}": float(i) for i in range(2000)}, step=0)  # ~50 kB: one record, too large for this broker
    assert run.flush(10)
    run.log({"small": 1.0}, step=1)
    report = run.finish()
    assert report.oversized_records == 1 and report.pending_records == 0
    assert broker.points() == [("small", 1, 1.0)]


def old_spool(directory: Path, producer_id: str) -> None:
    """A spool as an older version wrote it: one metric record over Kafka's limit, one heartbeat no
    cut could shrink (its tags alone are over it), between ordinary records."""
    info = RunInfo(run_id="old-run", team="t", project="p")
    huge_tags = {f"tag{i:03d}": "😀" * 1024 for i in range(256)}  # 256 x 4 kB
    ids = {"producer_id": producer_id}
    events = [
        RunStart(seq=0, run=info, params={"lr": "0.1"}, **ids),
        MetricBatch(
            seq=1,
            run_id="old-run",
            team="t",
            project="p",
            keys=list(WIDE),
            steps=[0] * 4096,
            ts_ms=[1_700_000_000_000] * 4096,
            values=list(WIDE.values()),
            **ids,
        ),
        MetricBatch(
            seq=2, run_id="old-run", team="t", project="p", keys=["loss"], steps=[1], ts_ms=[0], values=[0.5], **ids
        ),
        Heartbeat(seq=3, run=RunInfo(run_id="old-run", team="t", project="p", tags=huge_tags), ts_ms=0, **ids),
        RunEnd(seq=4, run=info, status=RunStatus.FINISHED, ended_at_ms=1, step=1, **ids),
    ]
    writer = SpoolWriter(directory, 8 << 20)
    for event in events:
        topic = TopicCode.METRICS if isinstance(event, MetricBatch) else TopicCode.RUNS
        writer.append(event.seq, topic, encode_event(event))
    writer.close()


def test_sync_splits_an_old_oversized_batch_and_skips_what_cannot_be_cut(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    producer = "a" * 32
    old_spool(tmp_path / "old-run" / "spool" / producer, producer)
    spools = find_spools([tmp_path / "old-run"])
    sender = SizeCheckingSender()
    with caplog.at_level(logging.WARNING, logger="runstream"):
        report = sync(spools, settings, sender_factory=factory_for(sender))
    assert report.failed == [] and sender.refused == 0
    assert (report.sent_records, report.split_records, report.oversized_records) == (4, 1, 1)
    events = sender.events()
    assert [type(e).__name__ for e in events] == ["RunStart", "MetricBatch", "MetricBatch", "MetricBatch", "RunEnd"]
    parts = [e for e in events if isinstance(e, MetricBatch) and e.seq == 1]
    assert [p.producer_id for p in parts] == [f"{producer}-0", f"{producer}-1"]  # told apart, replays recognised
    assert sorted(sender.points()) == sorted([(k, 0, v) for k, v in WIDE.items()] + [("loss", 1, 0.5)])
    assert max(len(value) for _, _, value in sender.sent) <= settings.max_record_bytes
    messages = [r.getMessage() for r in caplog.records]
    assert sum("nothing to cut it by" in m and "seq=3" in m for m in messages) == 1
