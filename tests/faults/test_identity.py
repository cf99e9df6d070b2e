"""What names a run, on the real broker and engine: a run id names a directory of the SDK's, a team
name the rows team isolation cuts out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.errors import UsageError
from runstream_core.team_access import team_condition
from tests.faults.helpers import dead_letters, ingest, points, status
from tests.fixtures.settings import StackSettings as Settings

JOB = "import runstream; runstream.init('faults', 'vision').log({'loss': 1.0})"


def test_a_run_id_that_names_a_directory_above_is_refused_before_anything_is_written_or_sent(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home" / ".runstream"
    settings = pipeline_settings.model_copy(update={"runs_dir": home / "runs"})
    for bad in ("..", ".", "run\n"):
        job = subprocess.run(
            [sys.executable, "-c", JOB],
            env={**os.environ, **settings.as_env(), "RUNSTREAM_RUN_ID": bad},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert job.returncode == 1 and "UsageError: run_id" in job.stderr, job.stderr[-2000:]
        with pytest.raises(UsageError, match=r"neither '\.' nor '\.\.'"):
            Run(project="faults", team="vision", run_id=bad, settings=settings)
    assert not (tmp_path / "home").exists()  # no spool, no run.json, not even the runs directory

    worker = worker_factory(settings)
    with Run(project="faults", team="vision", run_id="v1.2..final", settings=settings) as run:
        run.log({"loss": 1.0}, step=0)
    assert run.dir == home / "runs" / "v1.2..final"
    ingest(settings, worker)
    client = clickhouse_factory(settings)
    assert points(client, "v1.2..final") == [("loss", 0, 1.0)]
    assert client.query("SELECT count() FROM runs FINAL").result_rows == [(1,)]  # the refused ones sent nothing
    assert dead_letters(settings) == 0


def test_team_names_are_normalised_so_the_teams_row_filter_finds_the_rows(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    for run_id, team in (("as-typed", " Vision "), ("lower", "vision"), ("dashed", "ML-Infra")):
        with Run(project="faults", team=team, run_id=run_id, settings=pipeline_settings) as run:
            run.log({"loss": 0.5}, step=0)
    with pytest.raises(UsageError, match="team 'vision!' is not a team name"):
        Run(project="faults", team="vision!", run_id="refused", settings=pipeline_settings)
    ingest(pipeline_settings, worker)
    client = clickhouse_factory(pipeline_settings)
    assert status(client, "as-typed") == [("vision", "finished")]
    assert status(client, "dashed") == [("ml_infra", "finished")]
    per_team = {}
    for team in ("vision", "ml_infra", "Vision"):
        where = team_condition(team) if team.islower() else "team = 'Vision'"
        per_team[team] = client.query(f"SELECT count() FROM metrics WHERE {where}").result_rows[0][0]
    assert per_team == {"vision": 2, "ml_infra": 1, "Vision": 0}  # what the teams' row policies let through
    assert points(client, "as-typed") == points(client, "lower") == [("loss", 0, 0.5)]
    assert client.query("SELECT count() FROM runs FINAL").result_rows == [(3,)]
    assert dead_letters(pipeline_settings) == 0
