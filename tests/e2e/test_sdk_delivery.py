"""The SDK's promises on the real broker and engine: outages and kill -9 lose nothing and double nothing.

These tests own a broker of their own, because they stop and restart it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

import runstream
from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from runstream_worker.topics import ensure_topics
from tests.fixtures.kafka import Broker
from tests.fixtures.settings import StackSettings as Settings

KILLED_JOB = Path(__file__).parent / "scripts" / "killed_job.py"
KEYS = ("loss", "acc", "lr", "grad_norm")


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("kafka-outage"))
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture
def outage_settings(own_broker: Broker, pipeline_settings: Settings) -> Settings:
    own_broker.up()  # idempotent: a failed test may have left it down
    return pipeline_settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap, "finish_timeout_s": 120})


def stored_points(client: Client, run_id: str) -> tuple[int, int, float]:
    count, distinct, total = client.query(
        "SELECT count(), uniqExact(key, step), sum(value) FROM metrics WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows[0]
    return int(count), int(distinct), float(total)


def expected_points(steps: int) -> tuple[int, int, float]:
    n = steps * len(KEYS)
    return n, n, float(sum(step + k * 0.25 for step in range(steps) for k in range(len(KEYS))))


def test_broker_outage_mid_run_every_point_arrives_exactly_once(
    own_broker: Broker,
    outage_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    ensure_topics(outage_settings)
    run = runstream.init(project="outage", team="vision", settings=outage_settings)

    def log_steps(first: int, last: int) -> None:
        for step in range(first, last):
            run.log({key: step + k * 0.25 for k, key in enumerate(KEYS)}, step=step)

    log_steps(0, 3000)
    assert run.flush(60)
    own_broker.down()
    log_steps(3000, 6000)  # never raises, never waits: spooled
    assert not run.flush(2)
    own_broker.up()
    log_steps(6000, 9000)
    report = run.finish()
    assert report.complete, report

    worker = worker_factory(outage_settings)
    wait_caught_up(outage_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(outage_settings)
    assert stored_points(client, run.run_id) == expected_points(9000)
    statuses = client.query("SELECT status FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": run.run_id})
    assert statuses.result_rows == [("finished",)]


def sync_cli(settings: Settings, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "sync", *args],
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_kill_9_then_sync_loses_nothing_and_doubles_nothing(
    own_broker: Broker,
    outage_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = outage_settings.model_copy(update={"topic_prefix": f"k{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    steps = 4000
    job = subprocess.Popen(
        [sys.executable, str(KILLED_JOB), str(steps)],
        env={**os.environ, **settings.as_env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert job.stdin is not None and job.stdout is not None
    try:
        assert job.stdout.readline().strip() == "phase1", job.stderr.read() if job.stderr else ""
        own_broker.down()
        job.stdin.write("go\n")
        job.stdin.flush()
        assert job.stdout.readline().strip() == "phase2"
    finally:
        job.kill()  # SIGKILL: no atexit, no flush, no run end
        job.wait(30)
    own_broker.up()
    run_dir = settings.runs_dir / "killed-run"

    worker = worker_factory(settings)
    first = sync_cli(settings, str(run_dir))
    assert first.startswith("sent ") and "from 1 spool(s)" in first
    assert sync_cli(settings, str(run_dir)).startswith("sent 0 record(s) from 0 spool(s); 1 already synced")
    sync_cli(settings, "--force", str(run_dir))  # every record again: the worker must drop them all
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    assert "replays=" in worker.log_text()

    client = clickhouse_factory(settings)
    assert stored_points(client, "killed-run") == expected_points(steps)
    # No end was ever sent: the run stays running until the worker's liveness check says otherwise.
    statuses = client.query("SELECT status FROM runs FINAL WHERE run_id = 'killed-run'").result_rows
    assert statuses == [("running",)]
    params = client.query("SELECT key, value FROM params FINAL WHERE run_id = 'killed-run'").result_rows
    assert params == [("lr", "0.1")]
