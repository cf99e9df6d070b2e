"""The benchmarks stay runnable: each imports, and the query and worker-cost benchmarks run (quick)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_each_benchmark_imports(script: str) -> None:
    """Each script's imports resolve (a benchmark left behind by a move fails here, not in a bench run)."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {script[:-3]}"], cwd=BENCH, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_query_benchmark_prints_its_figures(tmp_path: Path) -> None:
    """Quick mode: small sizes, every key of the full run, the row counts of what was timed (the
    benchmark itself checks each timed read's rows, order and values, and exits non-zero if one differs)."""
    result = subprocess.run(
        [sys.executable, str(BENCH / "query.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["scales"] == [100, 300, 1000] and figures["mlflow_scales"] == [100, 300]
    # Every third run has optimizer=adamw: all of them, and the first page of 20.
    assert [figures[f"run_table_rows{tier}"] for tier in ("", "_10k", "_100k")] == [34, 100, 334]
    assert figures["page"] == 20 and figures["curve_steps"] == 5000
    # 10 curves of 5,000 steps drawn from 16-step buckets: 313 points each.
    assert figures["overlay_points"] == 10 * 313
    timed = [
        "run_table_ms", "run_table_ms_10k", "run_table_ms_100k",
        "run_table_all_ms", "run_table_all_ms_10k", "run_table_all_ms_100k",
        "overlay_ms", "endpoint_run_table_ms", "endpoint_overlay_ms",
    ]  # fmt: skip
    timed += [key.replace("_ms", "_cpu_ms", 1) for key in timed]  # each wall-clock figure has a CPU-time twin
    assert all(figures[key] > 0 for key in timed), {key: figures[key] for key in timed}
    mlflow = ["mlflow_run_table_ms", "mlflow_run_table_ms_10k", "mlflow_run_table_all_ms", "mlflow_overlay_ms"]
    mlflow += [key.replace("_ms", "_cpu_ms", 1) for key in mlflow]
    ratios = ["run_table_speedup_vs_mlflow", "run_table_10k_speedup_vs_mlflow", "overlay_speedup_vs_mlflow"]
    ratios += ["run_table_10k_cpu_speedup_vs_mlflow", "overlay_cpu_speedup_vs_mlflow"]
    if importlib.util.find_spec("mlflow") is None:  # the bench extra is not in the test environment
        assert all(figures[key] is None for key in mlflow + ratios)
    else:
        assert all(figures[key] > 0 for key in mlflow + ratios)


def test_the_storage_benchmark_measures_the_metrics_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "storage.py"), "--points", "50000", "--runs", "4"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["points"] == 50000 and figures["points_per_record"] == 250
    assert 0 < figures["compressed_bytes_per_point_merged"] < figures["uncompressed_bytes_per_point"]
    assert figures["compression_ratio_merged"] == pytest.approx(
        figures["uncompressed_bytes_per_point"] / figures["compressed_bytes_per_point_merged"], rel=0.01
    )
    # Per-column sizes are known for wide parts only (50,000 points make one compact part).
    assert set(figures["column_bytes_per_point"]) >= {"team", "project", "run_id", "key", "step", "ts", "value"}
    assert 0 < figures["wire_lz4_bytes_per_point"] < figures["wire_bytes_per_point"]
    assert set(figures["rollup_disk_bytes_per_point"]) == {
        "metric_summary", "metric_buckets", "run_latest", "ingested_records"
    }  # fmt: skip


def test_the_capacity_arithmetic_of_the_scaling_notes() -> None:
    """docs/scaling.md's worked example is what bench/capacity.py computes from the figures it quotes."""
    sys.path.insert(0, str(BENCH))
    try:
        import capacity
    finally:
        sys.path.remove(str(BENCH))
    sizing = capacity.plan(capacity.Workload(), capacity.Figures(), capacity.Assumptions())
    assert sizing["points_per_s"] == 500_000
    assert sizing["worker_processes"] == 3  # 500,000 / (361,000 x 0.5), rounded up
    assert sizing["kafka_bytes_per_s"] == pytest.approx(4.29e6)
    assert sizing["kafka_partitions"] == 12
    assert sizing["raw_disk_bytes"] == pytest.approx(500_000 * 86_400 * 30 * 5.75)
    assert sizing["clickhouse_shards"] == 5 and sizing["clickhouse_servers"] == 10
    notes = (BENCH.parent / "docs" / "scaling.md").read_text()
    for figure in ("361,000", "5.75", "1.81", "8.58", "248,000"):
        assert figure in notes, figure
    for line in (
        "| worker processes (one core each) | 3 |",
        "| Kafka partitions (metrics topic) | 12 |",
        "| ClickHouse shards (disk / inserts) | 5 / 1 |",
        "| ClickHouse servers (x2 replicas) | 10 |",
    ):
        assert line in notes, line


def test_the_worker_cost_benchmark_stores_every_point_and_prints_its_figures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "worker_cost.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["points"] == 100_000  # and the run checked that the store holds exactly that many
    assert figures["decode_s"] > 0 and figures["columns_s"] > 0 and figures["insert_s"] > 0


def test_the_wire_format_benchmark_prints_its_figures() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "wire_format.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    loop = figures["loop_10_keys"]
    assert loop["v1"]["records"] == loop["v2"]["records"] == 5  # 20,000 points in records of 4,096
    # Sizes are exact: a v2 point is 22 bytes (8 value, 8 step, 4 offset, 2 id) plus its share of the envelope.
    assert 22 < loop["v2"]["bytes_per_point"] < 23 < loop["v1"]["bytes_per_point"]


def test_the_alerts_benchmark_prints_its_figures(tmp_path: Path, kafka_bootstrap: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "alerts.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
        env={**os.environ, "RUNSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "alerts" and figures["alerts"] == 10
    assert 0 < figures["latency_p50_s"] <= figures["latency_p99_s"] <= figures["latency_max_s"]
