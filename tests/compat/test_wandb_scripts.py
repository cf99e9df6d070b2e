"""W&B scripts written the way W&B's docs write them, with ``import runstream.wandb as wandb``, run
unchanged against the real broker, worker and engine: the exact rows that arrive."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings

SCRIPTS = Path(__file__).parent / "scripts"


def run_script(name: str, settings: Settings, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / name)],
        env={**os.environ, **settings.as_env(), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def quickstart_points() -> list[tuple[int, str, float]]:
    """What W&B's quickstart logs with ``random.seed(7)``: (step, key, value), sorted."""
    rng = random.Random(7)
    offset = rng.random() / 5
    points = []
    for step, epoch in enumerate(range(2, 10)):
        acc = 1 - 2**-epoch - rng.random() / epoch - offset
        loss = 2**-epoch + rng.random() / epoch + offset
        points += [(step, "acc", acc), (step, "loss", loss)]
    return sorted(points)


def define_metric_points() -> list[tuple[int, str, float]]:
    """What the define_metric script logs, step by step by W&B's rules (one step per ``log()``; the
    ``val/*`` steps carry the last ``epoch``, their step metric)."""
    rng = random.Random(11)
    points: list[tuple[int, str, float]] = []
    step = 0
    for i in range(10):
        acc = rng.uniform(1 / (i + 1), 1)
        loss = rng.uniform(0, 1 / (i + 1))
        row = {"train_loss": 1 / (i + 1), "custom_step": i**2, "validation_loss": 1 / (i + 1), "acc": acc, "loss": loss}
        points += [(step, k, float(v)) for k, v in row.items()]
        step += 1
        if i % 5 == 4:
            points.append((step, "epoch", float(i // 5)))
            step += 1
            points += [(step, "val/loss", 1 / (i + 2)), (step, "val/acc", i / 10), (step, "epoch", float(i // 5))]
            step += 1
    return sorted(points)


def rows(client: Client, sql: str, **params: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in client.query(sql, parameters=params).result_rows]


def run_of(client: Client, project: str) -> tuple[str, str, str, str, str, dict[str, str]]:
    (run,) = rows(
        client,
        "SELECT run_id, team, name, run_group, status, tags FROM runs FINAL WHERE project = {p:String}",
        p=project,
    )
    return run  # type: ignore[return-value]


def points_of(client: Client, run_id: str) -> list[tuple[int, str, float]]:
    return rows(client, "SELECT step, key, value FROM metrics WHERE run_id = {r:String} ORDER BY step, key", r=run_id)  # type: ignore[return-value]


def params_of(client: Client, run_id: str) -> dict[str, str]:
    return dict(rows(client, "SELECT key, value FROM params FINAL WHERE run_id = {r:String}", r=run_id))  # type: ignore[arg-type]


def summary_of(client: Client, run_id: str) -> dict[str, object]:
    found = rows(client, "SELECT key, value, text FROM summary FINAL WHERE run_id = {r:String}", r=run_id)
    return {key: (text if value is None else value) for key, value, text in found}  # type: ignore[misc]


def approx_points(points: list[tuple[int, str, float]]) -> list[tuple[int, str, object]]:
    return [(s, k, pytest.approx(v, rel=1e-12)) for s, k, v in points]


def test_wandb_docs_scripts_store_exactly_what_wandb_would_show(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    run_script("wandb_quickstart.py", pipeline_settings)
    run_script("wandb_define_metric.py", pipeline_settings, RUNSTREAM_TEAM="research")
    config_out = run_script("wandb_config.py", pipeline_settings, WANDB_ENTITY="vision")
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)

    # The quickstart: entity -> team (normalised), config -> params, one step per log().
    run_id, team, _name, _group, status, tags = run_of(client, "my-awesome-project")
    assert (team, status, tags) == ("my_awesome_team_name", "finished", {})
    assert points_of(client, run_id) == approx_points(quickstart_points())
    assert params_of(client, run_id) == {
        "learning_rate": "0.02",
        "architecture": "CNN",
        "dataset": "CIFAR-100",
        "epochs": "10",
    }
    last = {k: v for _s, k, v in quickstart_points() if _s == 7}
    assert summary_of(client, run_id) == {"acc": pytest.approx(last["acc"]), "loss": pytest.approx(last["loss"])}

    # define_metric: the team from RUNSTREAM_TEAM, step_sync, glob and aggregate summaries.
    run_id, team, name, _group, status, _tags = run_of(client, "define-metric")
    assert (team, name, status) == ("research", "custom-axes", "finished")
    expected = define_metric_points()
    assert points_of(client, run_id) == approx_points(expected)

    def values(key: str) -> list[float]:
        return [v for _s, k, v in expected if k == key]

    assert summary_of(client, run_id) == {
        "acc.max": pytest.approx(max(values("acc"))),
        "loss.min": pytest.approx(min(values("loss"))),
        "loss.mean": pytest.approx(sum(values("loss")) / 10),
        "val/loss.min": pytest.approx(min(values("val/loss"))),
        "val/acc.min": pytest.approx(min(values("val/acc"))),
        "epoch": 1.0,
        "custom_step": 81.0,
        "train_loss": pytest.approx(0.1),
        "validation_loss": pytest.approx(0.1),
    }

    # Config, steps and commit, summary overrides, alerts, and the features that only warn.
    run_id, team, _name, group, status, tags = run_of(client, "config-usage")
    assert (team, group, status) == ("vision", "sweep-a", "finished")
    assert f"RUN {run_id} {run_id[:8]} config-usage 13" in config_out
    assert tags == {
        "baseline": "",
        "cnn": "",
        "job_type": "train",
    }
    assert client.query(
        "SELECT kind, event, level, title, text FROM alerts FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
    ).result_rows == [("run_alert", "raised", "WARN", "Low accuracy", "Accuracy 0.2 is below 0.3")]
    assert params_of(client, run_id) == {
        "epochs": "4",
        "batch_size": "32",
        "optimizer.name": "adamw",
        "optimizer.betas": "[0.9, 0.999]",
        "lr": "0.1",
        "channels": "16",
        "dropout": "0.2",
        "activation": "relu",
        "hidden": "8",
    }
    assert points_of(client, run_id) == approx_points(
        [
            (0, "train/acc", 0.0),
            (0, "train/loss", 1.0),
            (1, "train/acc", 0.1),
            (1, "train/loss", 0.5),
            (2, "train/acc", 0.2),
            (2, "train/loss", 1 / 3),
            (10, "final", 4.0),
            (10, "late", 1.0),
            (10, "same", 2.0),
            (11, "with_image", 5.0),
        ]
    )
    assert summary_of(client, run_id) == {
        "best_accuracy": 0.93,
        "note": "fine",
        "train/acc": pytest.approx(0.2),
        "train/loss": pytest.approx(1 / 3),
        "late": 1.0,
        "same": 2.0,
        "final": 4.0,
        "with_image": 5.0,
    }
    for warning in (
        "Tried to log to a step that is less than the current step",
        "wandb.Image (media) is not supported yet",
        "wandb.Table (tables) is not supported yet",
        "wandb.Artifact (artifacts) is not supported yet",
        "log_artifact (artifacts) is not supported yet",
        "wandb.watch is not supported yet",
    ):
        assert config_out.count(warning) == 1, (warning, config_out)
    assert config_out.count("event='alert'") == 1


def test_offline_wandb_run_waits_in_the_spool_for_runstream_sync(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    run_script("wandb_quickstart.py", pipeline_settings, WANDB_MODE="offline")
    spooled = list(pipeline_settings.runs_dir.glob("*/spool/*"))
    assert spooled, "the offline run left no spool"
    # disabled: nothing is written anywhere
    disabled_dir = tmp_path / "disabled"
    run_script("wandb_quickstart.py", pipeline_settings, WANDB_MODE="disabled", RUNSTREAM_RUNS_DIR=str(disabled_dir))
    assert not disabled_dir.exists()

    worker = worker_factory(pipeline_settings)
    sync = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "sync"],
        env={**os.environ, **pipeline_settings.as_env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr[-3000:]
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)
    run_id, team, _name, _group, status, _tags = run_of(client, "my-awesome-project")
    assert (team, status) == ("my_awesome_team_name", "finished")
    assert points_of(client, run_id) == approx_points(quickstart_points())


def test_the_module_needs_no_wandb_package(tmp_path: Path) -> None:
    """The module works where W&B's package cannot be imported (the test venv has it, for the importers)."""
    script = (
        "import sys\n"
        "sys.modules['wandb'] = None  # any 'import wandb' now raises ImportError\n"
        "import runstream.wandb as wandb\n"
        "run = wandb.init(project='p', entity='t', mode='disabled', config={'lr': 0.1})\n"
        "wandb.log({'loss': 1.0})\n"
        "print(wandb.config.lr, 'wandb' in sys.modules and sys.modules['wandb'] is None)\n"
        "wandb.finish()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["0.1", "True"]
