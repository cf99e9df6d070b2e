"""Forked children (fork-based DataLoader workers) on the real broker and engine: the parent's run
ends finished with exactly its own points, whatever its children logged or were sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from tests.faults.helpers import dead_letters, ingest, points, status
from tests.fixtures.settings import StackSettings as Settings

FORK_JOB = Path(__file__).parents[1] / "producer" / "scripts" / "fork_job.py"


def test_a_child_terminated_by_sigterm_and_one_that_exits_leave_the_parents_run_alone(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"handle_sigterm": True})  # as a training job has it
    worker = worker_factory(settings)
    job = subprocess.run(
        [sys.executable, str(FORK_JOB), "forked"],
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    out = json.loads(job.stdout)
    assert (out["terminated"], out["exited"]) == (-15, 0)
    assert (out["after_terminated"], out["after_exited"]) == ("running", "running")
    assert out["complete"] and out["pending_records"] == 0
    assert job.stderr.count("is a fork of the one that started the run") == 2  # once in each child
    assert "SIGTERM" not in job.stderr

    ingest(settings, worker)
    client = clickhouse_factory(settings)
    assert points(client, "forked") == [("parent", s, float(s)) for s in range(200)]
    assert status(client, "forked") == [("vision", "finished")]
    assert client.query("SELECT count() FROM summary FINAL WHERE run_id = 'forked'").result_rows == [(0,)]
    assert client.query("SELECT key, value FROM params FINAL WHERE run_id = 'forked'").result_rows == [("workers", "2")]
    assert dead_letters(settings) == 0
