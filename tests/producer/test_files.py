"""runstream's files on disk are its user's alone: directories 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream._spool import SYNCED_MARKER, segment_paths
from runstream._sync import find_spools, sync
from runstream.run import Run
from runstream.settings import Settings
from tests.producer.fixtures import FakeSender, factory_for


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask there is: nothing of ours may depend on the user's."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def offline_run(runs_dir: Path, run_id: str = "r1") -> Run:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, runs_dir=runs_dir, hardware_interval_s=0, handle_sigterm=False
    )
    run = Run(project="p", team="t", run_id=run_id, mode="offline", settings=settings, config={"token": "s3cret"})
    run.log({"loss": 1.0})
    run.finish()
    return run


def test_a_new_runs_dir_and_everything_in_it_are_private(tmp_path: Path, open_umask: None) -> None:
    (tmp_path / "home").mkdir(mode=0o777)
    runs_dir = tmp_path / "home" / ".runstream" / "runs"
    run = offline_run(runs_dir)
    (spool,) = find_spools([run.dir])
    (segment,) = segment_paths(spool)
    directories = [tmp_path / "home" / ".runstream", runs_dir, run.dir, run.dir / "spool", spool]
    assert [oct(mode(d)) for d in directories] == [oct(0o700)] * 5
    assert (oct(mode(segment)), oct(mode(run.dir / "run.json"))) == (oct(0o600), oct(0o600))
    assert mode(tmp_path / "home") == 0o777  # not ours: left alone
    assert not list(run.dir.glob(".run.json.*"))  # the state file was renamed into place


def test_directories_and_files_left_open_by_an_older_version_are_tightened(tmp_path: Path, open_umask: None) -> None:
    runs_dir = tmp_path / "runs"
    run_dir = runs_dir / "r1"
    (run_dir / "spool").mkdir(parents=True, mode=0o755)
    for directory in (runs_dir, run_dir, run_dir / "spool"):
        directory.chmod(0o755)
    (run_dir / "run.json").write_text("{}")
    (run_dir / "run.json").chmod(0o644)
    run = offline_run(runs_dir)
    assert [oct(mode(d)) for d in (runs_dir, run.dir, run.dir / "spool")] == [oct(0o700)] * 3
    assert mode(run.dir / "run.json") == 0o600


def test_sync_writes_its_marker_0600_and_tightens_an_old_spool(tmp_path: Path, open_umask: None) -> None:
    run = offline_run(tmp_path / "runs")
    (spool,) = find_spools([run.dir])
    (segment,) = segment_paths(spool)
    spool.chmod(0o755)
    segment.chmod(0o644)
    report = sync([spool], run.settings, sender_factory=factory_for(FakeSender()))
    assert report.sent_records == 3 and report.failed == []
    assert (mode(spool), mode(segment), mode(spool / SYNCED_MARKER)) == (0o700, 0o600, 0o600)
