"""`runstream import wandb` on offline runs the real wandb SDK wrote (WANDB_MODE=offline), a damaged one
included, on the real broker and engine: exact rows, imported twice."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings
from tests.importers.helpers import import_cli, params, points, runs, summary

T0 = 1_700_000_000_000
SCRIPT = Path(__file__).parent / "scripts" / "wandb_offline.py"


def make_offline_runs(directory: Path) -> tuple[str, str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(directory), "WANDB_SILENT": "true"}
    out = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, cwd=directory, capture_output=True, text=True, timeout=180, check=True
    )
    first, failed, long = out.stdout.split()
    return first, failed, long


def test_offline_wandb_runs_arrive_with_config_history_summary_and_exit(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    made = tmp_path / "made"
    made.mkdir()
    before_ms = time.time_ns() // 1_000_000
    first, failed, long = make_offline_runs(made)
    after_ms = time.time_ns() // 1_000_000
    # A copy of the long run with a damaged record past its 32 KiB first block: what comes before is read.
    damaged_root = tmp_path / "damaged"
    (source,) = made.glob(f"wandb/offline-run-*-{long}")
    shutil.copytree(source, damaged_root / source.name)
    log = damaged_root / source.name / f"run-{long}.wandb"
    data = bytearray(log.read_bytes())
    data[40_000] ^= 0xFF
    log.write_bytes(bytes(data))

    worker = worker_factory(pipeline_settings)
    out = import_cli(pipeline_settings, "wandb", str(made / "wandb"), "--team", "wb")
    assert out.stdout.startswith("imported 3 run(s) from wandb: 208 points, 4 params, 2 tags, 2 summary values")
    assert "skipped 1 history media, tables and histograms (not imported)" in out.stdout
    assert "skipped 1 history values that are no number (text, lists)" in out.stdout
    assert import_cli(pipeline_settings, "wandb", str(made / "wandb"), "--team", "wb").stdout == out.stdout
    bad = import_cli(pipeline_settings, "wandb", str(damaged_root), "--team", "wb_damaged", status=1)
    assert f"{log}: damaged record at byte" in bad.stderr
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)

    assert points(client, "wb") == sorted(
        [
            (first, "eval/acc", 0, T0, 0.25),
            (first, "eval/acc", 1, T0 + 1000, 0.5),
            (first, "eval/acc", 2, T0 + 2000, 0.75),
            (first, "flag", 3, T0 + 3000, 1.0),
            (first, "loss", 0, T0, 1.5),
            (first, "loss", 1, T0 + 1000, "nan"),
            (first, "loss", 2, T0 + 2000, 0.5),
            (failed, "loss", 0, T0 + 10_000, math.inf),
            *[(long, "x", step, T0 + 20_000 + 1000 * step, float(step)) for step in range(200)],
        ]
    )
    stored = {row[1]: row for row in runs(client, "wb")}
    tags = {"baseline": "", "cifar": ""}
    assert stored[first][:8] == ("wb-proj", first, "first", "sweep-1", "", "", tags, "finished")
    assert stored[failed][:8] == ("wb-proj", failed, "failed", "", "", "", {}, "failed")
    assert stored[long][7] == "finished"
    for row in stored.values():  # the start W&B recorded, the end after it
        assert before_ms <= row[8] <= after_ms and row[8] <= row[9]
    assert params(client, "wb") == [
        (first, "epochs", "3"),
        (first, "lr", "0.1"),
        (first, "optimizer.betas", "[0.9, 0.99]"),
        (first, "optimizer.name", "adam"),
    ]
    assert summary(client, "wb") == [(first, "best_acc", 0.75, ""), (first, "checkpoint", None, "s3://ckpt/3")]

    kept = points(client, "wb_damaged")
    assert 0 < len(kept) < 200
    assert kept == [(long, "x", step, T0 + 20_000 + 1000 * step, float(step)) for step in range(len(kept))]


def test_without_wandb_installed_the_import_says_which_extra(pipeline_settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "wandb"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'wandb'\", name='wandb')\n")
    (tmp_path / "runs").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "import", "wandb", str(tmp_path / "runs"), "--team", "wb"],
        env={**os.environ, **pipeline_settings.as_env(), "PYTHONPATH": str(tmp_path / "blocker")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1
    assert "needs the 'importers' extra (module 'wandb' is missing)" in out.stderr
