"""The benchmarks stay runnable: each imports, and the query and worker-cost benchmarks run (quick)."""

from __future__ import annotations

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
    result = subprocess.run(
        [sys.executable, str(BENCH / "query.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["run_table_rows"] == 34 and figures["overlay_points"] > 0
    assert figures["run_table_ms"] > 0 and figures["endpoint_run_table_ms"] > 0


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
