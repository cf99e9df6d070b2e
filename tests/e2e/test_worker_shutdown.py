"""SIGTERM makes the worker write what it has buffered, commit, and exit cleanly.

Faust drains a partial batch when its flush interval ends, so shutdown takes at most about
``worker_flush_interval_s`` plus Faust's own stop time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from kafka import KafkaProducer

from runstream_cli.worker_process import WorkerProcess
from runstream_core.events import MetricBatch, encode_event
from runstream_core.topics import Topics
from runstream_worker.lag import consumer_lag
from tests.fixtures.settings import StackSettings as Settings


def test_sigterm_flushes_a_partial_batch_and_commits_it(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    # The batch is far from full: only the interval or the shutdown makes the worker write it.
    settings = pipeline_settings.model_copy(update={"worker_flush_interval_s": 5.0, "worker_batch_records": 10_000})
    worker = worker_factory(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for i in range(20):
        batch = MetricBatch(
            run_id=f"run-{i % 4}",
            team="t",
            project="p",
            keys=["loss"] * 50,
            steps=list(range(i * 50, i * 50 + 50)),
            ts_ms=[1_700_000_000_000 + i] * 50,
            values=[float(i)] * 50,
        )
        producer.send(Topics(settings.topic_prefix).metrics, key=batch.run_id.encode(), value=encode_event(batch))
    producer.flush()
    producer.close()
    time.sleep(2)  # let the worker fetch the records into its (partial) batch

    assert worker.stop(timeout_s=90) == 0, worker.log_text()[-3000:]
    assert "batch written" in worker.log_text()
    assert sum(consumer_lag(settings).values()) == 0  # offsets of the flushed batch were committed

    client = clickhouse_factory(settings)
    count, total = client.query("SELECT count(), sum(value) FROM metrics").result_rows[0]
    assert (count, total) == (1000, sum(float(i) * 50 for i in range(20)))
