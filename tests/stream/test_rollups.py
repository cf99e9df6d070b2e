"""Rollups kept by materialized views equal the same aggregates computed from the raw rows."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from runstream_core import hardware_keys as hw
from runstream_core.clickhouse import connect
from runstream_core.events import HardwareBatch, MetricBatch, RunEnd, RunInfo, RunStart, RunStatus, RunUpdate
from runstream_worker.migrate import migrate
from runstream_worker.rows import RowBatch
from runstream_worker.sink import ClickHouseSink
from tests.fixtures.rollups import rollup_differences
from tests.fixtures.settings import StackSettings as Settings

T0 = 1_700_000_000_000


def lifecycle_rows() -> RowBatch:
    """r1 starts, changes a param, finishes; r2 starts and is still running."""
    rows = RowBatch()
    for run_id, lr in (("r1", "0.1"), ("r2", "0.3")):
        info = RunInfo(run_id=run_id, team="t", project="proj", name=f"name-{run_id}", user="ada", started_at_ms=T0)
        rows.add_run_start(RunStart(run=info, params={"lr": lr, "optimizer": "adamw"}))
    r1 = RunInfo(run_id="r1", team="t", project="proj", name="name-r1", user="ada", started_at_ms=T0)
    rows.add_run_update(RunUpdate(run=r1, params={"lr": "0.05"}, ts_ms=T0 + 5_000))
    rows.add_run_end(RunEnd(run=r1, status=RunStatus.FINISHED, ended_at_ms=T0 + 9_000, step=19_999))
    return rows


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Two runs x three keys x 20,000 steps, in 40 inserts of shuffled order, plus hardware samples."""
    path = tmp_path_factory.mktemp("rollups") / "clickhouse"
    chdb_settings = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    migrate(chdb_settings)
    rng = random.Random(7)
    points = [
        (run, key, step, rng.choice([rng.uniform(-5, 5), float(step)]))
        for run in ("r1", "r2")
        for key in ("loss", "acc", "lr")
        for step in range(20_000)
    ]
    rng.shuffle(points)  # out-of-order arrival must not change "last"
    sink = ClickHouseSink(chdb_settings)
    try:
        for i in range(40):
            rows = RowBatch()
            for run in ("r1", "r2"):
                part = [p for p in points[i::40] if p[0] == run]
                rows.add_metrics(
                    MetricBatch(
                        producer_id="p",
                        seq=i,
                        run_id=run,
                        team="t",
                        project="proj",
                        keys=[p[1] for p in part],
                        steps=[p[2] for p in part],
                        ts_ms=[T0 + p[2] for p in part],
                        values=[p[3] for p in part],
                    )
                )
            for sample in range(30):
                rows.add_hardware(
                    HardwareBatch(
                        producer_id="h",
                        seq=i * 30 + sample,
                        run_id="r1",
                        team="t",
                        project="proj",
                        host="node-1",
                        user="ada",
                        interval_ms=10_000,
                        ts_ms=[T0 + (i * 30 + sample) * 10_000] * 3,
                        keys=[hw.GPU_UTILIZATION_PERCENT, hw.GPU_UTILIZATION_PERCENT, hw.CPU_PERCENT],
                        devices=["gpu0", "gpu1", ""],
                        values=[float(sample % 4) * 25, 100.0, rng.uniform(0, 100)],
                    )
                )
            sink.write(rows, token=f"batch-{i}")
        sink.write(lifecycle_rows(), token="lifecycle")
    finally:
        sink.close()
    client = connect(chdb_settings)
    yield client
    client.close()


def test_metric_summary_equals_raw_aggregates(loaded: Client) -> None:
    rollup = loaded.query(
        "SELECT run_id, key, points, min_value, max_value, last_step, last_value FROM metric_summary_view "
        "ORDER BY run_id, key"
    ).result_rows
    raw = loaded.query(
        "SELECT run_id, key, count(), min(value), max(value), max(step), argMax(value, (step, ts)) FROM metrics "
        "GROUP BY run_id, key ORDER BY run_id, key"
    ).result_rows
    assert rollup == raw
    assert len(rollup) == 6 and all(row[2] == 20_000 and row[5] == 19_999 for row in rollup)


@pytest.mark.parametrize("level", [1, 2, 4])
def test_step_buckets_equal_raw_aggregates_at_each_level(loaded: Client, level: int) -> None:
    width = 16**level
    rollup = loaded.query(
        "SELECT run_id, key, bucket, sum(points), sum(sum_value), min(min_value), max(max_value), argMaxMerge(last) "
        "FROM metric_buckets WHERE level = {level:UInt8} GROUP BY run_id, key, bucket ORDER BY run_id, key, bucket",
        parameters={"level": level},
    ).result_rows
    raw = loaded.query(
        "SELECT run_id, key, intDiv(step, {width:Int64}) AS bucket, count(), sum(value), min(value), max(value), "
        "argMax(value, step) FROM metrics GROUP BY run_id, key, bucket ORDER BY run_id, key, bucket",
        parameters={"width": width},
    ).result_rows
    assert [(*r[:4], *r[5:]) for r in rollup] == [(*r[:4], *r[5:]) for r in raw]
    assert [r[4] for r in rollup] == pytest.approx([r[4] for r in raw])  # float sums differ in summation order
    assert len(rollup) == 6 * -(-20_000 // width)  # a 20,000-step curve in 20000/16^level buckets


def test_hardware_minutes_and_gpu_hours_equal_raw_aggregates(loaded: Client) -> None:
    rollup = loaded.query(
        "SELECT key, device, minute, sum(samples), min(min_value), max(max_value) FROM hardware_minute "
        "GROUP BY key, device, minute ORDER BY key, device, minute"
    ).result_rows
    raw = loaded.query(
        "SELECT key, device, toStartOfMinute(ts) AS minute, count(), min(value), max(value) FROM hardware "
        "GROUP BY key, device, minute ORDER BY key, device, minute"
    ).result_rows
    assert rollup == raw
    hours = loaded.query(
        "SELECT team, project, user, sum(gpu_hours), sum(busy_gpu_hours) FROM gpu_hours GROUP BY team, project, user"
    ).result_rows
    # 1,200 samples x 2 GPUs x 10 s = 6.667 GPU-hours; gpu1 always busy, gpu0 busy 0/25/50/75 % in turn.
    ((team, project, user, gpu_hours, busy),) = hours
    assert (team, project, user) == ("t", "proj", "ada")
    assert gpu_hours == pytest.approx(1200 * 2 * 10 / 3600)
    busy_seconds = 40 * sum(10 * (1.0 + (sample % 4) * 0.25) for sample in range(30))
    assert busy == pytest.approx(busy_seconds / 3600)


def test_run_table_equals_runs_params_and_raw_last_values(loaded: Client) -> None:
    table = loaded.query(
        "SELECT run_id, status, name, user, params, last_values, last_steps FROM run_table ORDER BY run_id"
    ).result_rows
    states = loaded.query("SELECT run_id, status, name, user FROM runs FINAL ORDER BY run_id").result_rows
    assert (
        [row[:4] for row in table]
        == states
        == [("r1", "finished", "name-r1", "ada"), ("r2", "running", "name-r2", "ada")]
    )
    params = loaded.query("SELECT run_id, key, value FROM params FINAL ORDER BY run_id, key").result_rows
    assert [(run, k, v) for run, _, _, _, p, _, _ in table for k, v in sorted(p.items())] == params
    assert table[0][4] == {"lr": "0.05", "optimizer": "adamw"}  # the update outranks the start
    last = loaded.query(
        "SELECT run_id, key, argMax(value, (step, ts)), max(step) FROM metrics "
        "GROUP BY run_id, key ORDER BY run_id, key"
    ).result_rows
    assert [(run, k, v, steps[k]) for run, *_, values, steps in table for k, v in sorted(values.items())] == last
    assert len(last) == 6


def test_every_rollup_equals_its_raw_aggregate(loaded: Client) -> None:
    assert rollup_differences(loaded) == []
