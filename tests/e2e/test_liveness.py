"""Live run state on the real broker and engine: stalled while stuck, crashed when heartbeats stop,
running again when they return; finished runs are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaProducer

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_core.events import Heartbeat, RunInfo, encode_event
from runstream_core.topics import Topics
from runstream_worker.lag import wait_caught_up
from runstream_worker.migrate import migrate
from tests.fixtures.pipeline import ServedClickHouse
from tests.fixtures.settings import StackSettings as Settings

HEARTBEAT_JOB = Path(__file__).parent / "scripts" / "heartbeat_job.py"


def run_state(settings: Settings, run_id: str) -> tuple[str, int, int] | None:
    """(status, stalled, last_step) of a run as stored now (read while the worker runs, over HTTP)."""
    client = connect(settings)
    try:
        rows = client.query(
            "SELECT status, stalled, last_step FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
        ).result_rows
    finally:
        client.close()
    return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None


def wait_for_state(settings: Settings, run_id: str, state: tuple[str, int, int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := run_state(settings, run_id)) != state:
        assert time.monotonic() < deadline, f"{run_id} is {seen}, expected {state}"
        time.sleep(0.2)


def test_runs_go_stalled_crashed_and_back_to_running(
    pipeline_settings: Settings,
    served_clickhouse: ServedClickHouse,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            "clickhouse_url": served_clickhouse.url,  # readable while the worker writes
            "heartbeat_interval_s": 0.3,
            "worker_crash_after_s": 3.0,
            "worker_stall_after_s": 1.0,
            "worker_liveness_interval_s": 0.5,
        }
    )
    migrate(settings)
    worker = worker_factory(settings)
    with Run(project="liveness", team="vision", run_id="finishes", settings=settings) as healthy:
        healthy.log({"loss": 1.0})

    job = subprocess.Popen(
        [sys.executable, str(HEARTBEAT_JOB), "stuck-job"],
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.stdout is not None and job.stdout.readline().strip() == "ready"
        # Heartbeats keep coming while the step stays at 9: flagged stalled, still running.
        wait_for_state(settings, "stuck-job", ("running", 1, 9))
    finally:
        job.kill()
        job.wait(30)
    wait_for_state(settings, "stuck-job", ("crashed", 0, 9))

    # The job comes back (e.g. a paused node resumes): a heartbeat with a new step.
    info = RunInfo(run_id="stuck-job", team="vision", project="liveness", started_at_ms=1)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    beat = Heartbeat(run=info, ts_ms=time.time_ns() // 1_000_000, step=10)
    producer.send(Topics(settings.topic_prefix).runs, key=b"stuck-job", value=encode_event(beat)).get(timeout=30)
    producer.close()
    wait_for_state(settings, "stuck-job", ("running", 0, 10))
    assert "run recovered: heartbeats are back" in worker.log_text()
    wait_caught_up(settings, timeout_s=60)
    assert worker.stop() == 0
    assert worker.log_text().count("run crashed") == 1  # the finished run was never marked
    assert run_state(settings, "finishes") == ("finished", 0, 0)
