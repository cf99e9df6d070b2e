"""Records and Kafka's size limit, on the real broker (its message.max.bytes is the reference) and engine."""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer

from runstream._spool import SpoolWriter
from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.events import MetricBatch, RunEnd, RunInfo, RunStart, RunStatus, encode_event
from runstream_core.topics import TopicCode
from tests.faults.helpers import dead_letters, ingest, points, status
from tests.fixtures.settings import StackSettings as Settings

# 4,096 points with 254-character keys: 1,126,573 bytes in one record, over kafka-python's 1 MiB.
WIDE = {f"{i:04d}".ljust(254, "k"): float(i) for i in range(4096)}


def record_sizes(settings: Settings) -> list[int]:
    consumer = KafkaConsumer(
        settings.topics.metrics,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return [len(message.value) for message in consumer]
    finally:
        consumer.close()


def test_a_log_wider_than_one_kafka_record_arrives_whole_and_nothing_waits_behind_it(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    run = Run(project="faults", team="vision", run_id="wide", settings=pipeline_settings)
    run.log({"before": 1.0}, step=0)
    run.log(WIDE, step=1)
    for step in range(2, 200):
        run.log({"after": float(step)}, step=step)
    report = run.finish()
    assert report.complete and report.oversized_records == 0
    assert max(record_sizes(pipeline_settings)) <= pipeline_settings.max_record_bytes
    ingest(pipeline_settings, worker)
    client = clickhouse_factory(pipeline_settings)
    expected = [
        ("before", 0, 1.0),
        *((k, 1, v) for k, v in WIDE.items()),
        *(("after", s, float(s)) for s in range(2, 200)),
    ]
    assert points(client, "wide") == sorted(expected)
    assert status(client, "wide") == [("vision", "finished")]


def test_a_broker_whose_limit_is_below_the_setting_loses_nothing(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    # Keys that lz4 cannot shrink: the broker's 1 MiB limit applies to the compressed batch.
    rng = random.Random(7)
    noisy = {f"{i:04d}" + "".join(rng.choices(string.ascii_letters, k=250)): float(i) for i in range(4096)}
    settings = pipeline_settings.model_copy(update={"max_record_bytes": 2 * 1024 * 1024})  # above the broker's
    worker = worker_factory(settings)
    run = Run(project="faults", team="vision", run_id="over-broker", settings=settings)
    run.log({"before": 1.0}, step=0)
    run.log(noisy, step=1)  # one record of 1.1 MB: the broker refuses it
    for step in range(2, 200):
        run.log({"after": float(step)}, step=step)
    report = run.finish()
    assert report.complete and report.oversized_records == 0, report
    ingest(settings, worker)
    client = clickhouse_factory(settings)
    expected = [
        ("before", 0, 1.0),
        *((k, 1, v) for k, v in noisy.items()),
        *(("after", s, float(s)) for s in range(2, 200)),
    ]
    assert points(client, "over-broker") == sorted(expected)
    assert status(client, "over-broker") == [("vision", "finished")]


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


def test_sync_sends_an_old_spools_oversized_record_in_parts_and_a_resync_doubles_nothing(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    producer = "0" * 32
    info = RunInfo(run_id="old-spool", team="vision", project="faults", started_at_ms=1_700_000_000_000)
    events = [
        RunStart(producer_id=producer, seq=0, run=info, params={"lr": "0.1"}),
        MetricBatch(
            producer_id=producer,
            seq=1,
            run_id="old-spool",
            team="vision",
            project="faults",
            keys=list(WIDE),
            steps=[0] * len(WIDE),
            ts_ms=[1_700_000_000_000] * len(WIDE),
            values=list(WIDE.values()),
        ),
        MetricBatch(
            producer_id=producer,
            seq=2,
            run_id="old-spool",
            team="vision",
            project="faults",
            keys=["loss"],
            steps=[1],
            ts_ms=[1_700_000_000_000],
            values=[0.5],
        ),
        RunEnd(producer_id=producer, seq=3, run=info, status=RunStatus.FINISHED, ended_at_ms=1_700_000_001_000, step=1),
    ]
    run_dir = tmp_path / "older-version" / "old-spool"
    writer = SpoolWriter(run_dir / "spool" / producer, 8 << 20)  # as an older version wrote it
    for event in events:
        topic = TopicCode.METRICS if isinstance(event, MetricBatch) else TopicCode.RUNS
        writer.append(event.seq, topic, encode_event(event))
    writer.close()
    assert len(encode_event(events[1])) > 1_048_576

    worker = worker_factory(pipeline_settings)
    first = sync_cli(pipeline_settings, str(run_dir))
    assert (
        first.strip()
        == "sent 4 record(s) from 1 spool(s); 0 already synced; 1 too large for one Kafka record, sent in parts"
    )
    again = sync_cli(pipeline_settings, "--force", str(run_dir))  # the worker must recognise every part
    assert again.startswith("sent 4 record(s)")
    ingest(pipeline_settings, worker)
    client = clickhouse_factory(pipeline_settings)
    assert points(client, "old-spool") == sorted([*((k, 0, v) for k, v in WIDE.items()), ("loss", 1, 0.5)])
    assert status(client, "old-spool") == [("vision", "finished")]
    assert max(record_sizes(pipeline_settings)) <= pipeline_settings.max_record_bytes
    assert dead_letters(pipeline_settings) == 0
