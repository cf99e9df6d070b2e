"""What the SDK stores, on the real broker and engine: odd values, wide logs, ranks, summary, hardware."""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable

import psutil
import pytest
from clickhouse_connect.driver.client import Client

from runstream._distributed import Distributed
from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core import hardware_keys as hw
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings


def test_bad_values_are_stored_faithfully_or_rejected_with_one_warning(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = worker_factory(pipeline_settings)
    wide = {f"layer_{i:05d}/grad_norm": i * 0.5 for i in range(10_000)}
    with (
        caplog.at_level(logging.WARNING, logger="runstream"),
        Run(project="values", team="vision", run_id="odd-values", settings=pipeline_settings) as run,
    ):
        for step in range(3):
            run.log(
                {
                    "nan": math.nan,
                    "pos_inf": math.inf,
                    "neg_inf": -math.inf,
                    "none": None,
                    "text": "0.5",
                    "huge_int": 10**400,
                    "big_int": 2**70,
                    7: 1.0,
                    ("tuple", "key"): 2.0,
                    "ok": 1.0,
                },
                step=step,
            )
        run.log(wide, step=3)
    assert run.delivery is not None and run.delivery.complete
    messages = [r.getMessage() for r in caplog.records]
    for needle, times in (
        ("key='none'", 1),
        ("key='text'", 1),
        ("too large for a float", 1),
        ("metric keys must be strings", 1),  # one warning for the kind, whichever key came first
    ):
        assert sum(needle in m for m in messages) == times, (needle, messages)

    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)
    rows = client.query(
        "SELECT step, key, value FROM metrics WHERE run_id = 'odd-values' AND step < 3 ORDER BY step, key"
    ).result_rows
    kept = ("big_int", "nan", "neg_inf", "ok", "pos_inf")
    assert [(step, key) for step, key, _ in rows] == [(s, k) for s in range(3) for k in kept]
    by_key = {key: value for step, key, value in rows if step == 0}
    assert math.isnan(by_key["nan"])
    assert by_key["pos_inf"] == math.inf and by_key["neg_inf"] == -math.inf
    assert by_key["big_int"] == float(2**70) and by_key["ok"] == 1.0
    count, keys, total = client.query(
        "SELECT count(), uniqExact(key), sum(value) FROM metrics WHERE run_id = 'odd-values' AND step = 3"
    ).result_rows[0]
    assert (count, keys, total) == (10_000, 10_000, sum(wide.values()))


def test_ranks_summary_tags_and_hardware_reach_their_tables(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    sampled = pipeline_settings.model_copy(update={"hardware_interval_s": 0.5})
    ranks = [
        Run(
            project="dist",
            team="nlp",
            run_id="ddp-run",
            settings=sampled,
            distributed=Distributed(rank=rank, local_rank=rank, world_size=2),
            config={"lr": 0.1},
        )
        for rank in range(2)
    ]
    for step in range(100):
        for rank, run in enumerate(ranks):
            run.log({"loss": rank * 1000.0 + step}, step=step)
    ranks[0].summary["best_loss"] = 0.25
    ranks[0].summary["checkpoint"] = "s3://ckpt/100"
    ranks[0].set_tags({"stage": "pretrain"})
    ranks[0].flush(30)
    ranks[1].flush(30)
    time.sleep(1.2)  # a few hardware samples
    for run in ranks:
        assert run.finish().complete

    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)
    per_rank = client.query(
        "SELECT rank, count(), sum(value) FROM metrics WHERE run_id = 'ddp-run' GROUP BY rank ORDER BY rank"
    ).result_rows
    assert per_rank == [(0, 100, float(sum(range(100)))), (1, 100, float(sum(1000 + s for s in range(100))))]
    runs = client.query("SELECT status, world_size, tags FROM runs FINAL WHERE run_id = 'ddp-run'").result_rows
    assert runs == [("finished", 2, {"stage": "pretrain"})]
    summary = client.query(
        "SELECT key, value, text FROM summary FINAL WHERE run_id = 'ddp-run' ORDER BY key"
    ).result_rows
    assert summary == [("best_loss", 0.25, ""), ("checkpoint", None, "s3://ckpt/100")]

    host_keys = {
        (rank, key)
        for rank, key in client.query(
            "SELECT DISTINCT rank, key FROM hardware WHERE run_id = 'ddp-run' AND device = ''"
        ).result_rows
    }
    # Node-wide readings come from local rank 0 only; every rank reports its own process.
    assert {(0, hw.CPU_PERCENT), (0, hw.MEMORY_TOTAL_BYTES), (0, hw.CPU_PROCESS_PERCENT)} <= host_keys
    assert (1, hw.CPU_PROCESS_PERCENT) in host_keys and (1, hw.CPU_PERCENT) not in host_keys
    total, host, interval = client.query(
        "SELECT any(value), any(host), any(interval_ms) FROM hardware WHERE run_id = 'ddp-run' AND key = {k:String}",
        parameters={"k": hw.MEMORY_TOTAL_BYTES},
    ).result_rows[0]
    assert (total, host, interval) == (float(psutil.virtual_memory().total), socket.gethostname(), 500)
