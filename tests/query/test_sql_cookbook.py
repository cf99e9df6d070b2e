"""Every query of docs/sql.md runs against the seeded data, returns rows, and several return
exactly what the seed implies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runstream import query
from runstream_core.events import RunStatus
from tests.fixtures.seed import STEPS, loss_at
from tests.query.conftest import Seeded

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
SECTION = re.compile(r"^## (?P<title>.+?)\n(?P<body>.*?)(?=^## |\Z)", re.S | re.M)
SQL_BLOCK = re.compile(r"```sql\n(?P<sql>.*?)```", re.S)
PLACEHOLDER = re.compile(r"\{(?P<name>\w+):[^}]+\}")

# Values for every placeholder used in the cookbook.
PARAMETERS: dict[str, Any] = {
    "run_ids": ["vision-0-0", "nlp-0-1", "vision-0-2"],  # final losses 0.1, 0.25, 0.2
    "key": "loss",
    "every": 500,
    "team": "vision",
    "project": "vision-main",
    "points": 1000,
    "quiet_s": 30,  # the seed's last points are a minute old
}


def cookbook() -> dict[str, str]:
    """Section title -> its one SQL block."""
    queries = {}
    for section in SECTION.finditer(COOKBOOK.read_text()):
        blocks = SQL_BLOCK.findall(section["body"])
        if blocks:
            assert len(blocks) == 1, f"one query per section: {section['title']}"
            queries[section["title"].strip()] = blocks[0]
    return queries


QUERIES = cookbook()


def run(seeded: Seeded, title: str) -> pd.DataFrame:
    sql = QUERIES[title]
    names = {match["name"] for match in PLACEHOLDER.finditer(sql)}
    missing = names - PARAMETERS.keys()
    assert not missing, f"{title}: no test value for {missing}"
    frame = query.sql(sql, parameters={name: PARAMETERS[name] for name in names}, settings=seeded.settings)
    assert isinstance(frame, pd.DataFrame)
    return frame


def test_the_cookbook_has_the_expected_recipes() -> None:
    assert len(QUERIES) == 11
    assert {"Best hyperparameters", "Idle GPUs", "Stalled runs", "Per-team usage"} <= QUERIES.keys()


@pytest.mark.parametrize("title", list(QUERIES))
def test_every_query_returns_rows(seeded: Seeded, title: str) -> None:
    assert len(run(seeded, title)) > 0


def test_compare_runs_side_by_side(seeded: Seeded) -> None:
    frame = run(seeded, "Compare runs side by side")
    facts = seeded.facts
    expected = sorted(PARAMETERS["run_ids"], key=lambda run_id: facts.run(run_id).final_loss)
    assert frame["run_id"].tolist() == expected
    assert frame["lr"].tolist() == [facts.run(run_id).params["lr"] for run_id in expected]
    assert frame["loss"].tolist() == [loss_at(facts.run(run_id), STEPS - 1) for run_id in expected]
    assert frame["last_step"].tolist() == [STEPS - 1] * 3


def test_compare_runs_at_the_same_steps(seeded: Seeded) -> None:
    frame = run(seeded, "Compare runs at the same steps")
    assert frame["step"].tolist() == [0, 500, 1000, 1500]
    at_500 = frame.iloc[1]["value_by_run"]
    assert at_500 == {run_id: loss_at(seeded.facts.run(run_id), 500) for run_id in PARAMETERS["run_ids"]}


def test_best_hyperparameters(seeded: Seeded) -> None:
    frame = run(seeded, "Best hyperparameters")
    finished = [r for r in seeded.facts.of_team("vision") if r.status is RunStatus.FINISHED]
    assert sorted(r.run_id for r in finished) == ["vision-0-0", "vision-0-4", "vision-1-0"]
    rows = [(r.optimizer, r.lr, r.runs, r.best_run) for r in frame.itertuples()]
    assert rows == [("adamw", "0.001", 2, "vision-0-0"), ("adamw", "0.0003", 1, "vision-0-4")]
    assert frame["best_loss"].tolist() == pytest.approx([0.1, 0.3], abs=1e-12)
    assert frame["mean_loss"].tolist() == pytest.approx([0.105, 0.3], abs=1e-12)


def test_curves_downsampled(seeded: Seeded) -> None:
    frame = run(seeded, "Curves, downsampled")
    counts = frame.groupby("run_id").size().to_dict()
    assert counts == dict.fromkeys(PARAMETERS["run_ids"], STEPS // 16)  # level 1: 125 buckets of 16 steps
    # Same numbers as runstream.query.curves(), which follows the same rule.
    curves = query.curves(PARAMETERS["run_ids"], "loss", points=1000, settings=seeded.settings)
    mine = frame.sort_values(["run_id", "step"])
    theirs = curves.sort_values(["run_id", "step"])
    assert mine["step"].tolist() == theirs["step"].tolist()
    assert mine["mean"].tolist() == pytest.approx(theirs["value"].tolist(), rel=1e-12)


def test_gpu_hours_per_team_project_and_user(seeded: Seeded) -> None:
    frame = run(seeded, "GPU-hours per team, project and user this week")
    # Each seeded run holds 2 GPUs for 90 samples of 10 s: half a GPU-hour.
    per_user: dict[tuple[str, str, str], float] = {}
    for r in seeded.facts.runs:
        key = (r.team, r.project, r.user)
        per_user[key] = per_user.get(key, 0.0) + r.gpus * seeded.facts.hardware_samples * 10 / 3600
    got = {(r.team, r.project, r.user): r.held_hours for r in frame.itertuples()}
    assert got == pytest.approx(per_user, abs=1e-9)
    assert got[("vision", "vision-main", "ada")] == pytest.approx(1.5)


def test_idle_gpus(seeded: Seeded) -> None:
    frame = run(seeded, "Idle GPUs")
    idle = sorted((r for r in seeded.facts.runs if r.idle_gpu), key=lambda r: r.team)
    assert all(r.status is RunStatus.RUNNING for r in idle)
    expected = [(r.team, r.project, r.run_id, r.host, "gpu1", 3.0) for r in idle]
    assert [tuple(row) for row in frame.iloc[:, :6].itertuples(index=False)] == expected
    assert [r.run_id for r in idle] == ["nlp-0-1", "speech-0-1", "vision-0-1"]


def test_runs_that_crashed_or_failed(seeded: Seeded) -> None:
    frame = run(seeded, "Runs that crashed or failed")
    expected = {
        r.run_id: r.status.value for r in seeded.facts.runs if r.status in (RunStatus.CRASHED, RunStatus.FAILED)
    }
    assert dict(zip(frame["run_id"], frame["status"], strict=True)) == expected
    assert len(expected) == 9
    assert set(frame["last_step"]) == {STEPS - 1}


def test_stalled_runs(seeded: Seeded) -> None:
    frame = run(seeded, "Stalled runs")
    running = sorted(r.run_id for r in seeded.facts.runs if r.status is RunStatus.RUNNING)
    assert sorted(frame["run_id"]) == running
    assert len(running) == 6
    assert (frame["quiet_s"] >= 59).all()  # the seed's last points were logged a minute before now


def test_per_team_usage(seeded: Seeded) -> None:
    frame = run(seeded, "Per-team usage")
    rows = {r.team: (r.runs, r.users, r.points) for r in frame.itertuples()}
    assert rows == {"vision": (8, 2, 8 * 2 * STEPS), "nlp": (8, 2, 8 * 2 * STEPS), "speech": (8, 1, 8 * 2 * STEPS)}
    assert frame["gpu_hours"].tolist() == pytest.approx([4.0, 4.0, 4.0])


def test_pipeline_health(seeded: Seeded) -> None:
    frame = run(seeded, "Pipeline health")
    assert frame["worker"].tolist() == ["worker-a"]
    row = frame.iloc[0]
    assert row["records"] == sum(100 + minute for minute in range(30))
    assert row["points"] == sum(50_000 + 1000 * minute for minute in range(30))
    assert (row["dead_letters"], row["max_lag"], row["slowest_batch_ms"]) == (1, 4, 59.0)
