"""Exactly once across a worker killed with SIGKILL mid-stream and restarted (no flush, no commit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings

JOBS, STEPS, KEYS = 3, 15_000, ("loss", "acc", "lr", "grad_norm", "throughput")


def train(index: int, settings: Settings) -> None:
    with Run(project="recovery", team="vision", run_id=f"job-{index}", settings=settings) as run:
        for step in range(STEPS):
            run.log({key: index * 1e6 + step + k * 0.125 for k, key in enumerate(KEYS)}, step=step)
            if step % 1000 == 999:
                time.sleep(0.05)  # a training loop, not a burst: the kill lands mid-stream


def test_worker_killed_mid_stream_then_restarted_stores_every_point_once(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"worker_batch_records": 20, "worker_commit_interval_s": 2.0})
    first = worker_factory(settings)
    jobs = [threading.Thread(target=train, args=(i, settings)) for i in range(JOBS)]
    for job in jobs:
        job.start()
    deadline = time.monotonic() + 60
    while first.log_text().count("batch written") < 5:  # some batches inserted, their offsets maybe not committed
        assert time.monotonic() < deadline, first.log_text()[-2000:]
        time.sleep(0.05)
    first.kill()
    for job in jobs:
        job.join()

    second = worker_factory(settings)
    wait_caught_up(settings, timeout_s=180)
    assert second.stop() == 0
    client = clickhouse_factory(settings)
    stored = client.query(
        "SELECT run_id, count(), uniqExact(key, step), sum(value) FROM metrics GROUP BY run_id ORDER BY run_id"
    ).result_rows
    expected = [
        (
            f"job-{i}",
            STEPS * len(KEYS),
            STEPS * len(KEYS),
            sum(i * 1e6 + s + k * 0.125 for s in range(STEPS) for k in range(len(KEYS))),
        )
        for i in range(JOBS)
    ]
    assert [row[:3] for row in stored] == [row[:3] for row in expected]
    assert [row[3] for row in stored] == [row[3] for row in expected]
