"""Live run state on the real broker and engine: stalled while stuck, crashed when heartbeats stop,
running again when they return; finished runs are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from kafka import KafkaProducer

from runstream.run import Run
from runstream.settings import Settings
from runstream_schemas.events import Heartbeat, RunInfo, encode_event
from runstream_schemas.topics import Topics
from runstream_worker.lag import wait_caught_up
from runstream_worker.process import WorkerProcess

HEARTBEAT_JOB = Path(__file__).parent / "scripts" / "heartbeat_job.py"


def wait_for_line(worker: WorkerProcess, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in worker.log_text():
        assert time.monotonic() < deadline, f"no {text!r} in the worker log: {worker.log_text()[-2000:]}"
        time.sleep(0.2)


def test_runs_go_stalled_crashed_and_back_to_running(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            "heartbeat_interval_s": 0.3,
            "worker_crash_after_s": 3.0,
            "worker_stall_after_s": 1.0,
            "worker_liveness_interval_s": 0.5,
        }
    )
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
        time.sleep(2.0)  # heartbeats keep coming, the step stays at 9: stalled
    finally:
        job.kill()
        job.wait(30)
    wait_for_line(worker, "run crashed: heartbeats stopped")

    # The job comes back (e.g. a paused node resumes): a heartbeat with a new step.
    info = RunInfo(run_id="stuck-job", team="vision", project="liveness", started_at_ms=1)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    beat = Heartbeat(run=info, ts_ms=time.time_ns() // 1_000_000, step=10)
    producer.send(Topics(settings.topic_prefix).runs, key=b"stuck-job", value=encode_event(beat)).get(timeout=30)
    producer.close()
    wait_for_line(worker, "run recovered: heartbeats are back")
    wait_caught_up(settings, timeout_s=60)
    assert worker.stop() == 0
    assert worker.log_text().count("run crashed") == 1  # the finished run was never marked

    client = clickhouse_factory(settings)
    history = client.query(
        "SELECT status, stalled, last_step FROM runs WHERE run_id = 'stuck-job' ORDER BY updated_at, status"
    ).result_rows
    statuses = [status for status, _, _ in history]
    assert statuses[0] == "running" and statuses[-1] == "running"
    assert ("running", 1, 9) in history  # flagged stalled while stuck at step 9
    crashed = statuses.index("crashed")
    assert all(status == "running" for status in statuses[:crashed])
    assert history[-1] == ("running", 0, 10)
    final = client.query(
        "SELECT run_id, status, stalled FROM runs FINAL WHERE run_id IN ('stuck-job', 'finishes') ORDER BY run_id"
    ).result_rows
    assert final == [("finishes", "finished", 0), ("stuck-job", "running", 0)]
