"""The worker's neighbours going away while it runs: the broker restarted (a broker of the test's own)
and ClickHouse away for a while. The worker carries on by itself; every point is stored once and
every rollup equals its raw aggregate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_worker.lag import consumer_lag, wait_caught_up
from runstream_worker.migrate import migrate
from tests.faults.worker_support import Feed, Workload, assert_stored_exactly
from tests.fixtures.kafka import Broker
from tests.fixtures.pipeline import ServedClickHouse
from tests.fixtures.settings import StackSettings as Settings

STEPS = 3_000


def train(run_id: str, settings: Settings, steps: int) -> None:
    with Run(project="outages", team="vision", run_id=run_id, settings=settings) as run:
        for step in range(steps):
            run.log({"loss": step * 0.5, "acc": step * 0.25}, step=step)
            if step % 100 == 99:
                time.sleep(0.1)  # a training loop: the outage lands mid-run


def assert_trained(client: Client, run_id: str, steps: int) -> None:
    rows = client.query(
        "SELECT count(), uniqExact(key, step), sum(value) FROM metrics WHERE run_id = {r:String}",
        parameters={"r": run_id},
    ).result_rows
    assert rows == [(2 * steps, 2 * steps, sum(s * 0.75 for s in range(steps)))]
    assert client.query(
        "SELECT status FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
    ).result_rows == [("finished",)]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker for this test alone: the session's is shared, and this one is restarted."""
    broker = Broker(tmp_path / "own-kafka")
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


def test_a_broker_restart_under_a_running_worker_loses_and_doubles_nothing(
    own_broker: Broker,
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap})
    worker = worker_factory(settings)
    before, after = Workload(run_id="before", batches=10), Workload(run_id="after", batches=10)
    feed = Feed(settings)
    feed.events(before.events())
    feed.close()
    job = threading.Thread(target=train, args=("through", settings, STEPS))
    job.start()
    time.sleep(1.0)
    own_broker.down()
    time.sleep(3.0)
    own_broker.up()  # same address, same data
    job.join()
    feed = Feed(settings)
    feed.events(after.events())
    feed.close()
    wait_caught_up(settings, timeout_s=180)
    assert worker.running()
    assert worker.stop() == 0
    client = clickhouse_factory(settings)
    assert_trained(client, "through", STEPS)
    assert_stored_exactly(client, [before, after])


def test_clickhouse_away_for_a_while_loses_and_doubles_nothing(
    pipeline_settings: Settings,
    served_clickhouse: ServedClickHouse,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    settings = pipeline_settings.model_copy(update={"clickhouse_url": served_clickhouse.url})
    migrate(settings)
    worker = worker_factory(settings)
    works = [Workload(run_id=f"job-{i}", batches=15, samples=8) for i in range(3)]
    feed = Feed(settings)
    feed.events(works[0].events())
    wait_caught_up(settings, timeout_s=60)

    served_clickhouse.stop()
    feed.events(works[1].events())  # in Kafka; the worker cannot store it
    deadline = time.monotonic() + 30
    while "clickhouse insert failed; retrying" not in worker.log_text():
        assert time.monotonic() < deadline, worker.log_text()[-2000:]
        time.sleep(0.2)
    feed.events(works[2].events())
    time.sleep(2.0)
    assert sum(consumer_lag(settings).values()) > 0  # nothing committed while ClickHouse is away
    assert worker.running()
    feed.close()

    served_clickhouse.start()  # same port, same data: the worker resumes by itself
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    assert "record skipped" not in worker.log_text()
    client = connect(settings)
    try:
        assert_stored_exactly(client, works)
    finally:
        client.close()
