"""Runs the SDK ends by itself are delivered like runs ended with ``finish()``: at interpreter exit
(atexit, also after an uncaught exception) and on SIGTERM, for a new run and for a run resumed in the
same process after a ``finish()``.

Each job is a process of its own (``scripts/exit_job.py``); one worker then stores every run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from runstream_worker.topics import ensure_topics
from tests.fixtures.settings import StackSettings as Settings

EXIT_JOB = Path(__file__).parent / "scripts" / "exit_job.py"
STEPS = 400
KEYS = 4
# case -> (how the process ends, the run's final status)
CASES = {
    "unfinished": (0, "finished"),
    "resumed": (0, "finished"),
    "crashed": (1, "failed"),
    "sigterm": (-signal.SIGTERM, "killed"),
    "resumed-sigterm": (-signal.SIGTERM, "killed"),
}


def run_job(settings: Settings, run_id: str, case: str) -> subprocess.CompletedProcess[str]:
    job = subprocess.Popen(
        [sys.executable, str(EXIT_JOB), run_id, str(STEPS), case],
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None
    try:
        if case.endswith("sigterm"):
            assert job.stdout.readline().strip() == "ready", job.stderr.read() if job.stderr else ""
            job.send_signal(signal.SIGTERM)
        out, err = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(30)
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def spooled_files(settings: Settings, run_id: str) -> list[str]:
    return sorted(str(p.relative_to(settings.runs_dir)) for p in (settings.runs_dir / run_id).rglob("*.seg"))


def test_runs_ended_at_exit_or_by_sigterm_are_delivered(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"handle_sigterm": True})
    ensure_topics(settings)
    run_ids = {case: f"{case}-{uuid.uuid4().hex[:8]}" for case in CASES}
    ended = {}
    for case, run_id in run_ids.items():
        job = run_job(settings, run_id, case)
        warnings = [
            line
            for line in job.stderr.splitlines()
            if line.startswith("event=") and ("undelivered" in line or "failed" in line)
        ]
        ended[case] = (job.returncode, warnings, spooled_files(settings, run_id))
    # Every record acknowledged: no warning, and the spool is gone.
    assert ended == {case: (returncode, [], []) for case, (returncode, _) in CASES.items()}

    worker = worker_factory(settings)
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(settings)
    n = STEPS * KEYS
    expected_sum = float(sum(step + k * 0.25 for step in range(STEPS) for k in range(KEYS)))
    for case, run_id in run_ids.items():
        count, distinct, total = client.query(
            "SELECT count(), uniqExact(key, step), sum(value) FROM metrics WHERE run_id = {r:String}",
            parameters={"r": run_id},
        ).result_rows[0]
        assert (count, distinct, total) == (n, n, expected_sum), case
        runs = client.query(
            "SELECT status, last_step FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
        ).result_rows
        assert runs == [(CASES[case][1], STEPS - 1)], case
