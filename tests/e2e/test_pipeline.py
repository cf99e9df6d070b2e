"""End to end on the real broker and the embedded ClickHouse: SDK -> Kafka -> Faust worker -> ClickHouse."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import msgspec
import pytest
from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer, KafkaProducer

import runstream
from runstream_cli.worker_process import WorkerProcess
from runstream_core.events import MetricBatch, RunInfo, RunStart, encode_event
from runstream_core.topics import Topics
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings

RUNS = 3
STEPS = 2000
KEYS = ("train/loss", "train/acc", "eval/loss", "lr", "grad_norm")


def value_at(run_index: int, key_index: int, step: int) -> float:
    # Dyadic values: sums are exact in binary floating point whatever the summation order.
    return run_index * 1000.0 + key_index * 10.0 + step * 0.25


def train(run_index: int, settings: Settings, reports: dict[str, runstream.Run]) -> None:
    config = {"optimizer": {"name": "adamw", "lr": 10.0 ** -(run_index + 2)}, "batch_size": 32 * (run_index + 1)}
    try:
        with runstream.init(
            project="e2e", team=f"team-{run_index % 2}", name=f"run-{run_index}", config=config, settings=settings
        ) as run:
            reports[run.run_id] = run
            for step in range(STEPS):
                run.log({key: value_at(run_index, k, step) for k, key in enumerate(KEYS)}, step=step)
            if run_index == 2:
                raise RuntimeError("diverged")  # this run must end as failed
    except RuntimeError:
        pass


@pytest.mark.parametrize("takes_at_once", [1, 2])
def test_three_runs_arrive_exactly_once_with_params_and_status(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    takes_at_once: int,
) -> None:
    if takes_at_once > 1:  # small takes, several in hand at once on each point topic
        pipeline_settings = pipeline_settings.model_copy(
            update={"worker_takes_at_once": takes_at_once, "worker_batch_records": 5}
        )
    worker = worker_factory(pipeline_settings)
    runs: dict[str, runstream.Run] = {}
    threads = [threading.Thread(target=train, args=(i, pipeline_settings, runs)) for i in range(RUNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == RUNS
    for run in runs.values():
        assert run.delivery is not None and run.delivery.complete, run.delivery

    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0, worker.log_text()[-3000:]

    client = clickhouse_factory(pipeline_settings)
    index_of = {run_id: int(run.name.split("-")[1]) for run_id, run in runs.items()}

    stored = {
        (run_id, key): (count, total, distinct_steps, first, last)
        for run_id, key, count, total, distinct_steps, first, last in client.query(
            "SELECT run_id, key, count(), sum(value), uniqExact(step), min(step), max(step) "
            "FROM metrics GROUP BY run_id, key"
        ).result_rows
    }
    expected = {
        (run_id, key): (STEPS, sum(value_at(i, k, s) for s in range(STEPS)), STEPS, 0, STEPS - 1)
        for run_id, i in index_of.items()
        for k, key in enumerate(KEYS)
    }
    assert stored == expected

    spot = client.query(
        "SELECT value FROM metrics WHERE run_id = {r:String} AND key = 'eval/loss' AND step = 1234",
        parameters={"r": next(r for r, i in index_of.items() if i == 1)},
    ).result_rows
    assert spot == [(value_at(1, 2, 1234),)]

    params = {
        (run_id, key): value
        for run_id, key, value in client.query("SELECT run_id, key, value FROM params FINAL").result_rows
    }
    assert params == {
        **{(r, "optimizer.name"): "adamw" for r in index_of},
        **{(r, "optimizer.lr"): str(10.0 ** -(i + 2)) for r, i in index_of.items()},
        **{(r, "batch_size"): str(32 * (i + 1)) for r, i in index_of.items()},
    }

    statuses = {
        run_id: (team, project, name, status, ended is not None)
        for run_id, team, project, name, status, ended in client.query(
            "SELECT run_id, team, project, name, status, ended_at FROM runs FINAL"
        ).result_rows
    }
    assert statuses == {  # logged as team-0 and team-1: stored under the team names the rule makes of them
        r: (f"team_{i % 2}", "e2e", f"run-{i}", "failed" if i == 2 else "finished", True) for r, i in index_of.items()
    }


def test_malformed_records_are_skipped_with_a_reason_and_nothing_else_is_lost(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    topics = Topics(pipeline_settings.topic_prefix)

    def batch(first_step: int) -> MetricBatch:
        return MetricBatch(
            producer_id="p",
            seq=first_step,
            run_id="r1",
            team="t",
            project="p",
            keys=["loss"] * 3,
            steps=[first_step, first_step + 1, first_step + 2],
            ts_ms=[1_700_000_000_000] * 3,
            values=[1.5, 2.5, 3.5],
        )

    wrong_lengths = msgspec.msgpack.encode(
        {
            "type": "metric_batch",
            "v": 1,
            "run_id": "r1",
            "team": "t",
            "project": "p",
            "keys": ["a", "b"],
            "steps": [1],
            "ts_ms": [1],
            "values": [1.0, 2.0],
        }
    )
    missing_field = msgspec.msgpack.encode({"type": "metric_batch", "v": 1, "run_id": "r1", "team": "t"})
    wrong_topic = encode_event(RunStart(run=RunInfo(run_id="r1", team="t", project="p")))
    future_version = msgspec.msgpack.encode({**msgspec.to_builtins(batch(50)), "v": 99})
    values = [
        encode_event(batch(0)),
        b"\x00 not msgpack \xff",
        wrong_lengths,
        missing_field,
        wrong_topic,
        future_version,
        encode_event(batch(100)),
    ]
    producer = KafkaProducer(bootstrap_servers=pipeline_settings.kafka_bootstrap)
    offsets = [producer.send(topics.metrics, key=b"r1", value=v).get(timeout=30).offset for v in values]
    producer.close()

    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    log = worker.log_text()

    skipped = re.findall(r"event='record skipped' offset=(\d+) partition=\d+ reason='([^']*)'", log)
    assert [int(offset) for offset, _ in skipped] == offsets[1:6]
    reasons = [reason for _, reason in skipped]
    assert "invalid event" in reasons[0]
    assert "differ in length" in reasons[1]
    assert "missing required field" in reasons[2].lower()
    assert "does not belong on" in reasons[3]
    assert "unsupported schema version 99" in reasons[4]

    client = clickhouse_factory(pipeline_settings)
    rows = client.query("SELECT step, value FROM metrics ORDER BY step").result_rows
    assert rows == [(0, 1.5), (1, 2.5), (2, 3.5), (100, 1.5), (101, 2.5), (102, 3.5)]

    # Each bad record went to the dead-letter topic, as it was, with its reason and source offset.
    consumer = KafkaConsumer(
        topics.dead_letters,
        bootstrap_servers=pipeline_settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    letters = [(dict(m.headers), m.key, m.value) for m in consumer]
    consumer.close()
    assert [int(h["source_offset"]) for h, _, _ in letters] == offsets[1:6]
    assert [v for _, _, v in letters] == values[1:6]
    assert {h["source_topic"] for h, _, _ in letters} == {topics.metrics.encode()}
    assert [h["reason"].decode() for h, _, _ in letters] == reasons
    assert {k for _, k, _ in letters} == {b"r1"}
