"""A forked child (a fork-based DataLoader worker) does not touch its parent's run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runstream._spool import read_spool
from runstream_core.events import MetricBatch, RunEnd, RunStart, RunStatus
from tests.producer.fixtures import decoded

FORK_JOB = Path(__file__).parent / "scripts" / "fork_job.py"


def test_forked_children_neither_end_the_parents_run_nor_add_to_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RUNSTREAM_RUNS_DIR": str(tmp_path / "runs"),
        "RUNSTREAM_MODE": "offline",
        "RUNSTREAM_HARDWARE_INTERVAL_S": "0",
    }
    job = subprocess.run(
        [sys.executable, str(FORK_JOB), "forked"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert job.returncode == 0, job.stderr
    out = json.loads(job.stdout)
    assert (out["terminated"], out["exited"]) == (-15, 0)  # SIGTERM still ends a child, as it would without us
    assert (out["after_terminated"], out["after_exited"]) == ("running", "running")
    events = [decoded(r.payload) for r in read_spool(Path(out["spool"]))]
    assert (out["rejected_points"], out["pending_records"]) == (0, len(events))  # offline: all in the spool
    assert isinstance(events[0], RunStart) and isinstance(events[-1], RunEnd)
    assert all(isinstance(e, MetricBatch) for e in events[1:-1])  # the child's summary update went nowhere
    points = [
        point for e in events if isinstance(e, MetricBatch) for point in zip(e.keys, e.steps, e.values, strict=True)
    ]
    assert points == [("parent", s, float(s)) for s in range(200)]
    end = events[-1]
    assert isinstance(end, RunEnd) and (end.status, end.step) == (RunStatus.FINISHED, 199)
    state = json.loads((tmp_path / "runs" / "forked" / "run.json").read_text())
    assert (state["status"], state["last_step"]) == ("finished", 199)

    warnings = job.stderr.splitlines()
    assert sum("is a fork of the one that started the run" in line for line in warnings) == 2  # once per child
    assert not any("SIGTERM" in line or "undelivered" in line for line in warnings), job.stderr
