"""``run.alert()``: a RunAlert on the runs topic, spaced by ``wait_duration`` per title, bounded by
the event schema, never raising into training."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import runstream
from runstream.settings import Settings
from runstream_core.events import AlertLevel, RunAlert
from tests.producer.fixtures import FakeSender
from tests.producer.test_run import make_run


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, runs_dir=tmp_path / "runs", hardware_interval_s=0, handle_sigterm=False)  # type: ignore[call-arg]


def test_alerts_are_sent_once_per_title_within_wait_duration(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    assert run.alert("loss diverged", "loss 1e9 at step 10", level="error", wait_duration=3600)
    assert not run.alert("loss diverged", "again", level=AlertLevel.ERROR, wait_duration=3600)  # spaced
    assert run.alert("lr warm", "ok", wait_duration=datetime.timedelta(seconds=0))
    assert run.alert("lr warm", "ok again", level="WARN", wait_duration=0)
    run.finish()
    alerts = [e for e in sender.events() if isinstance(e, RunAlert)]
    assert [(a.title, a.text, a.level) for a in alerts] == [
        ("loss diverged", "loss 1e9 at step 10", AlertLevel.ERROR),
        ("lr warm", "ok", AlertLevel.INFO),
        ("lr warm", "ok again", AlertLevel.WARN),
    ]
    assert {topic for topic, _, value in sender.sent if b"run_alert" in value} == {f"{settings.topic_prefix}runs"}
    assert all(a.run.run_id == run.run_id and a.producer_id for a in alerts)


@pytest.mark.parametrize(
    ("title", "text", "level"),
    [
        ("", "x", "INFO"),
        ("t\n", "x", "INFO"),
        ("t" * 300, "x", "INFO"),
        ("t", "x" * 20_000, "INFO"),
        ("t", "x", "LOUD"),
    ],
)
def test_bad_alerts_are_refused_without_raising(settings: Settings, title: str, text: str, level: str) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    assert run.alert(title, text, level=level) is False
    run.finish()
    assert not [e for e in sender.events() if isinstance(e, RunAlert)]


def test_alert_after_finish_does_nothing(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    run.finish()
    assert run.alert("late") is False
    assert hasattr(runstream, "alert") and runstream.AlertLevel.WARN == "WARN"
