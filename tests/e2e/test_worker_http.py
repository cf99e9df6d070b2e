"""The worker serves its embedded store over ClickHouse's HTTP interface while it ingests.

chDB lets one process own a database path, so in embedded mode Grafana, notebooks and SQL clients
reach the data through the worker. The store is seeded with the multi-team data set first, then a
training job keeps logging while clients query over HTTP: every dashboard's panel queries, bound
parameters, and a write that the read-only interface refuses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

import runstream
from runstream.settings import Settings
from runstream_worker.clickhouse import connect
from runstream_worker.dashboards import all_queries, option_value
from runstream_worker.lag import wait_caught_up
from runstream_worker.process import WorkerProcess
from tests.fixtures.kafka import free_port
from tests.fixtures.seed import SeedFacts, seed

STEPS = 3000
KEYS = ("loss", "acc")


def train(settings: Settings, started: threading.Event) -> None:
    with runstream.init(project="live", team="vision", name="live-run", settings=settings) as run:
        for step in range(STEPS):
            run.log({"loss": 1.0 / (step + 1), "acc": step / STEPS}, step=step)
            if step % 100 == 0:
                started.set()
                time.sleep(0.2)  # about six seconds of training, so queries overlap ingestion


@pytest.fixture
def seeded(pipeline_settings: Settings) -> tuple[Settings, SeedFacts]:
    settings = pipeline_settings.model_copy(update={"worker_http_port": free_port()})
    return settings, seed(settings)  # seeded before the worker owns the path


def test_clients_query_over_http_while_the_worker_ingests(
    seeded: tuple[Settings, SeedFacts], worker_factory: Callable[[Settings], WorkerProcess]
) -> None:
    settings, facts = seeded
    worker = worker_factory(settings)
    http = f"http://127.0.0.1:{settings.worker_http_port}"
    client = connect(Settings(_env_file=None, clickhouse_url=http))  # type: ignore[call-arg]
    started = threading.Event()
    job = threading.Thread(target=train, args=(settings, started))
    job.start()
    assert started.wait(60)
    counts = []
    ran = 0
    while job.is_alive() or not counts:
        for dashboard, panel, sql in all_queries(
            {
                "team": option_value("vision"),
                "project": option_value("vision-main"),
                "run": [option_value("vision-0-0"), option_value("vision-0-1")],
            },
            time_from_ms=facts.start_ms,
            time_to_ms=facts.now_ms + 600_000,
        ):
            result = client.query(sql)
            assert result.column_names, (dashboard, panel)
            ran += 1
            counts.append(client.query("SELECT count() FROM metrics WHERE project = 'live'").result_rows[0][0])
    job.join()
    assert ran > 0
    # Rows became visible while the job was still logging: the count grew between polls.
    assert len(set(counts)) >= 2, counts
    bound = client.query(
        "SELECT count() FROM metrics WHERE team = {team:String} AND run_id = {run:String}",
        parameters={"team": "vision", "run": "vision-0-0"},
    )
    assert bound.result_rows == [(facts.steps * 2,)]
    with pytest.raises(DatabaseError, match="readonly"):
        client.command("DROP TABLE metrics")
    wait_caught_up(settings, timeout_s=120)
    assert client.query("SELECT count() FROM metrics WHERE project = 'live'").result_rows == [(STEPS * len(KEYS),)]
    assert client.query("SELECT count() FROM metrics").result_rows == [
        (STEPS * len(KEYS) + len(facts.runs) * facts.steps * 2,)
    ]
    client.close()
    assert worker.stop() == 0, worker.log_text()[-3000:]
