"""Disk faults: a runs directory that cannot be written, a spool whose writes fail. The run goes on
in memory, says so once, counts what happened, and never raises."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runstream.run import Run
from runstream.settings import Settings
from tests.producer.fixtures import FakeSender, factory_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        flush_interval_s=0.02,
        finish_timeout_s=10,
        topic_prefix="unit.",
        runs_dir=tmp_path / "runs",
        hardware_interval_s=0,
        handle_sigterm=False,
        max_points_per_record=100,
    )


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
