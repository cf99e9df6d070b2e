"""The worker's own health on the real broker and engine: Prometheus metrics and pipeline_health rows."""

from __future__ import annotations

import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from kafka import KafkaProducer

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.topics import Topics
from runstream_worker.lag import wait_caught_up
from tests.fixtures.kafka import free_port
from tests.fixtures.pipeline import scrape
from tests.fixtures.settings import StackSettings as Settings


def test_worker_reports_counts_latency_lag_and_health_rows(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    port = free_port()
    settings = pipeline_settings.model_copy(update={"worker_metrics_port": port, "worker_health_interval_s": 0.5})
    worker = worker_factory(settings)
    topics = Topics(settings.topic_prefix)
    with Run(project="health", team="vision", run_id="counted", settings=settings) as run:
        for step in range(250):
            run.log({"loss": 1.0, "acc": 0.5, "lr": 0.1, "grad": 2.0}, step=step)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for _ in range(2):
        producer.send(topics.metrics, key=b"x", value=b"not an event").get(timeout=30)
    producer.close()
    wait_caught_up(settings, timeout_s=120)
    time.sleep(1.5)  # a health interval or two after the last batch

    metrics = scrape(port)
    assert metrics[("runstream_worker_rows_total", (("table", "metrics"),))] == 1000
    assert metrics[("runstream_worker_dead_letters_total", ())] == 2
    assert metrics[("runstream_worker_replays_total", ())] == 0
    metric_records = metrics[("runstream_worker_records_total", (("topic", topics.metrics),))]
    assert metric_records >= 3  # the points' record(s) and the two bad ones
    assert metrics[("runstream_worker_batch_seconds_count", ())] >= 2
    lags = [v for (name, _), v in metrics.items() if name == "runstream_worker_consumer_lag"]
    assert lags and all(v == 0 for v in lags)
    assert worker.stop() == 0

    client = clickhouse_factory(settings)
    totals = client.query(
        "SELECT count() > 2, sum(points), sum(dead_letters), sum(records), argMax(consumer_lag, ts), "
        "uniqExact(worker) FROM pipeline_health"
    ).result_rows[0]
    assert totals == (
        True,
        1000,
        2,
        metric_records + metrics[("runstream_worker_records_total", (("topic", topics.runs),))],
        0,
        1,
    )
