"""The benchmarks stay runnable: each imports cleanly, and the query benchmark runs end to end (quick)."""

from __future__ import annotations

import importlib.util
import json
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
