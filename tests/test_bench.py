"""The benchmarks stay runnable: each imports cleanly, and the query benchmark runs end to end (quick)."""

from __future__ import annotations

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
    result = subprocess.run(
        [sys.executable, str(BENCH / "query.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["run_table_rows"] == 34 and figures["overlay_points"] > 0
    assert figures["run_table_ms"] > 0 and figures["endpoint_run_table_ms"] > 0


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
