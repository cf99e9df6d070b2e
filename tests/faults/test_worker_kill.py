"""A worker SIGKILLed at each point of an insert, then replaced: every point stored once, every rollup
equal to its raw aggregate.

The kill comes from ``worker_inject/sitecustomize.py``, put on the worker's ``PYTHONPATH``: no hook in
the worker itself. The points: before the insert is sent, between the raw part and the materialized
views (the part committed under its token, no view written), and after the views but before the
batch is acknowledged (nothing committed to Kafka).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from runstream_worker.migrate import migrate
from tests.faults.worker_support import MARKER, Feed, Workload, assert_stored_exactly
from tests.fixtures.settings import StackSettings as Settings

INJECT = Path(__file__).parent / "worker_inject"
REPO = Path(__file__).resolve().parents[2]


def wait_killed(worker: WorkerProcess, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.running():
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.1)
    assert worker.returncode == -signal.SIGKILL, worker.log_text()[-3000:]


@pytest.mark.parametrize("point", ["before", "between", "after"])
def test_a_worker_killed_at_any_point_of_an_insert_loses_and_doubles_nothing(
    point: str,
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = pipeline_settings.model_copy(update={"worker_batch_records": 5, "worker_commit_interval_s": 0.2})
    migrate(settings)
    work = Workload(run_id=f"killed-{point}", batches=30, marker_at=17)
    feed = Feed(settings)
    feed.events(work.events())  # all waiting in Kafka: the worker's takes are of 5 records
    feed.close()

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(INJECT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RUNSTREAM_FAULT_KILL", point)
    monkeypatch.setenv("RUNSTREAM_FAULT_MARKER", MARKER)
    doomed = worker_factory(settings)
    wait_killed(doomed)
    for name in ("RUNSTREAM_FAULT_KILL", "PYTHONPATH"):
        monkeypatch.delenv(name)

    # Looked at from a process of its own: the embedded store is then free again for the next worker.
    marked, short = in_child_process(settings)
    assert marked == (0 if point == "before" else work.points // 2)
    # Between the raw part and its views, the rollups are short of the killed insert's points.
    assert (short != []) == (point == "between"), short

    replacement = worker_factory(settings)
    wait_caught_up(settings, timeout_s=120)
    assert replacement.stop() == 0
    assert "stored rows inserted again to complete their rollups" in replacement.log_text() or point == "before"
    assert_stored_exactly(clickhouse_factory(settings), [work])


def in_child_process(settings: Settings) -> tuple[int, list[str]]:
    """(marker points stored, rollups that differ from raw) of the embedded store, read by a child."""
    script = (
        "import json, sys\n"
        "from runstream_core.clickhouse import connect\n"
        "from tests.fixtures.rollups import rollup_differences\n"
        "from tests.fixtures.settings import StackSettings\n"
        "settings = StackSettings.model_validate_json(sys.argv[1])\n"
        "client = connect(settings)\n"
        f"marked = client.query(\"SELECT count() FROM metrics WHERE key = '{MARKER}'\").result_rows[0][0]\n"
        "print(json.dumps([marked, rollup_differences(client)]))\n"
        "client.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, settings.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    marked, short = json.loads(out.stdout.strip().splitlines()[-1])
    return int(marked), list(short)
