"""Workers sharing one ClickHouse over HTTP (`runstream serve`): ClickHouse going away for a while,
and a second worker joining mid-stream. Both must end with every point stored exactly once."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_worker.lag import consumer_lag, wait_caught_up
from runstream_worker.migrate import migrate
from tests.fixtures.pipeline import ServedClickHouse
from tests.fixtures.settings import StackSettings as Settings

KEYS = ("loss", "acc", "lr", "grad_norm")


def train(run_id: str, first: int, last: int, settings: Settings, pause_every: int = 0) -> None:
    with Run(project="scale", team="vision", run_id=run_id, settings=settings, resume=first > 0) as run:
        for step in range(first, last):
            run.log({key: step + k * 0.25 for k, key in enumerate(KEYS)}, step=step)
            if pause_every and step % pause_every == pause_every - 1:
                time.sleep(0.05)


def expected(steps: int) -> tuple[int, int, float]:
    n = steps * len(KEYS)
    return n, n, float(sum(step + k * 0.25 for step in range(steps) for k in range(len(KEYS))))


def stored(settings: Settings) -> dict[str, tuple[int, int, float]]:
    client = connect(settings)
    try:
        rows = client.query(
            "SELECT run_id, count(), uniqExact(key, step), sum(value) FROM metrics GROUP BY run_id"
        ).result_rows
    finally:
        client.close()
    return {run_id: (int(count), int(distinct), float(total)) for run_id, count, distinct, total in rows}


def test_clickhouse_away_for_a_while_loses_and_commits_nothing(
    pipeline_settings: Settings,
    served_clickhouse: ServedClickHouse,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    settings = pipeline_settings.model_copy(update={"clickhouse_url": served_clickhouse.url})
    migrate(settings)
    worker = worker_factory(settings)
    train("steady", 0, 2000, settings)
    wait_caught_up(settings, timeout_s=60)

    served_clickhouse.stop()
    train("steady", 2000, 5000, settings)  # lands in Kafka; the worker cannot insert it
    deadline = time.monotonic() + 30
    while "clickhouse insert failed; retrying" not in worker.log_text():
        assert time.monotonic() < deadline, worker.log_text()[-2000:]
        time.sleep(0.2)
    time.sleep(2.0)
    assert sum(consumer_lag(settings).values()) > 0  # nothing committed while ClickHouse is away
    assert worker.running()

    served_clickhouse.start()  # same port, same data: the worker resumes by itself
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    assert stored(settings) == {"steady": expected(5000)}


def test_a_second_worker_joining_mid_stream_shares_partitions_without_loss_or_doubles(
    pipeline_settings: Settings,
    served_clickhouse: ServedClickHouse,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    settings = pipeline_settings.model_copy(
        update={"clickhouse_url": served_clickhouse.url, "topic_partitions": 8, "worker_batch_records": 20}
    )
    migrate(settings)
    first = worker_factory(settings)
    runs = [f"job-{i}" for i in range(8)]
    jobs = [threading.Thread(target=train, args=(run_id, 0, 6000, settings, 500)) for run_id in runs]
    for job in jobs:
        job.start()
    time.sleep(1.0)
    second = worker_factory(settings)  # joins the group: partitions are rebalanced mid-stream
    for job in jobs:
        job.join()
    wait_caught_up(settings, timeout_s=180)
    assert second.stop() == 0 and first.stop() == 0

    assert stored(settings) == dict.fromkeys(runs, expected(6000))
    # After the rebalance each worker owned a share of the partitions.
    shares = [re.findall(r"event='partitions assigned' partitions=(\d+)", w.log_text()) for w in (first, second)]
    assert int(shares[1][-1]) > 0 and int(shares[0][-1]) > 0
