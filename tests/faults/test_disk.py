"""Disk faults on the real broker and engine: a runs directory that cannot be written, a full disk,
and what a run leaves on disk (its user's alone)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream._spool import segment_paths
from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from tests.faults.helpers import dead_letters, ingest, points, status
from tests.fixtures.settings import StackSettings as Settings

FULL_DISK_JOB = Path(__file__).parent / "scripts" / "full_disk_job.py"
KEYS = ("loss", "acc", "lr", "grad_norm")


def job_points(steps: int) -> list[tuple[str, int, float]]:
    """The points full_disk_job.py logs, as ``points()`` reads them back."""
    values = {"loss": 0.5, "acc": 0.25, "grad_norm": 2.0}
    rows = [(key, step, step * values[key] if key in values else 0.1) for key in KEYS for step in range(steps)]
    return sorted(rows)


def test_a_runs_dir_that_cannot_be_written_still_delivers_every_point(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = pipeline_settings.model_copy(update={"runs_dir": blocker / "runs"})
    worker = worker_factory(settings)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run = Run(project="faults", team="vision", run_id="no-runs-dir", settings=settings)  # never raises
        for step in range(3000):
            run.log({"loss": step * 0.5, "acc": step * 0.25}, step=step)
        report = run.finish()
    assert report.complete and (report.pending_records, report.dropped_records) == (0, 0)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "cannot create the run's directory" in warned[0]
    ingest(settings, worker)
    client = clickhouse_factory(settings)
    expected = sorted([("acc", s, s * 0.25) for s in range(3000)] + [("loss", s, s * 0.5) for s in range(3000)])
    assert points(client, "no-runs-dir") == expected
    assert status(client, "no-runs-dir") == [("vision", "finished")]
    assert dead_letters(settings) == 0


def test_a_full_disk_does_not_stop_delivery_to_a_healthy_kafka(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    steps = 5000  # ~20,000 points: several hundred kB of records, far past the 64 kB a file may hold
    job = subprocess.run(
        [sys.executable, str(FULL_DISK_JOB), "full-disk", str(64 * 1024), str(steps)],
        env={**os.environ, **pipeline_settings.as_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    report = json.loads(job.stdout)
    assert report["flushed"] and report["flush_s"] < 10, report  # delivered while the disk stayed full
    assert (report["pending_records"], report["dropped_records"], report["spool_errors"]) == (0, 0, 1)
    assert job.stderr.count("spool write failed") == 1
    ingest(pipeline_settings, worker)
    client = clickhouse_factory(pipeline_settings)
    assert points(client, "full-disk") == job_points(steps)
    assert status(client, "full-disk") == [("vision", "finished")]


def test_what_a_run_leaves_on_disk_is_its_users_alone(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    runs_dir = pipeline_settings.runs_dir
    (runs_dir / "private").mkdir(parents=True, mode=0o755)  # an older version left them open
    runs_dir.chmod(0o755)
    worker = worker_factory(pipeline_settings)
    previous = os.umask(0)
    try:
        run = Run(project="faults", team="vision", run_id="private", settings=pipeline_settings, config={"key": "s3"})
        for step in range(1000):
            run.log({"loss": step * 0.5}, step=step)
        assert run.flush(30)
        spool = run.spool_path
        assert spool is not None
        on_disk = [runs_dir, run.dir, run.dir / "spool", spool, *segment_paths(spool), run.dir / "run.json"]
        modes = {str(path.relative_to(runs_dir.parent)): oct(stat.S_IMODE(path.stat().st_mode)) for path in on_disk}
        report = run.finish()
    finally:
        os.umask(previous)
    assert report.complete
    assert sorted(modes.values()) == sorted([oct(0o700)] * 4 + [oct(0o600)] * (len(on_disk) - 4)), modes
    assert len(on_disk) >= 6  # a segment at least, and the state file
    assert stat.S_IMODE((run.dir / "run.json").stat().st_mode) == 0o600
    ingest(pipeline_settings, worker)
    client = clickhouse_factory(pipeline_settings)
    assert points(client, "private") == [("loss", s, s * 0.5) for s in range(1000)]
    assert status(client, "private") == [("vision", "finished")]
