"""Reading back what a fault left: the rows a worker stored, the records it set aside."""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer

from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings


def ingest(settings: Settings, worker: WorkerProcess) -> None:
    """Wait until the worker has stored everything on the topics, then stop it (it owns the embedded store)."""
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    skipped = re.findall(r"event='record skipped'.*", worker.log_text())
    assert skipped == [], skipped  # the worker never saw a record it had to refuse


def points(client: Client, run_id: str) -> list[tuple[str, int, float]]:
    """Every metric row of a run, (key, step, value), sorted."""
    rows = client.query(
        "SELECT key, step, value FROM metrics WHERE run_id = {r:String} ORDER BY key, step, value",
        parameters={"r": run_id},
    ).result_rows
    return [(str(k), int(s), float(v)) for k, s, v in rows]


def status(client: Client, run_id: str) -> list[tuple[str, str]]:
    """(team, status) of a run's row."""
    rows = client.query("SELECT team, status FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": run_id})
    return [(str(team), str(state)) for team, state in rows.result_rows]


def dead_letters(settings: Settings) -> int:
    """Records on the dead-letter topic."""
    consumer = KafkaConsumer(
        settings.topics.dead_letters,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return sum(1 for _ in consumer)
    finally:
        consumer.close()
