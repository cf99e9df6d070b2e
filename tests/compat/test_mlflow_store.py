"""MLflow on runstream: the real mlflow client writes through ``runstream://`` (the SDK, the real broker
and worker) and reads back from the engine; hostile search input stays data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from clickhouse_connect.driver.client import Client
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

from runstream import query
from runstream.mlflow import RunstreamStore
from runstream.mlflow._search import search_sql
from runstream.mlflow._uri import team_from_uri
from runstream_cli.worker_process import WorkerProcess
from runstream_core.errors import UsageError
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings

SCRIPTS = Path(__file__).parent / "scripts"

HOSTILE_FILTERS = [
    "params.optimizer = 'adam'' OR 1=1 --'",
    "params.optimizer = 'x\\' OR 1=1 --'",
    "tags.`owner'] = '' OR 1=1) --` = 'ml-team'",
    "attributes.run_name = '\\'; DROP TABLE runs; --'",
    "attributes.run_id IN ('x'') OR 1=1 --', 'y')",
    "metrics.`acc) OR (1=1` > 0",
]


def test_uri_names_the_team_or_takes_the_setting() -> None:
    assert team_from_uri("runstream://", "default") == "default"
    assert team_from_uri("runstream:///", "default") == "default"
    assert team_from_uri("runstream://?team=ML-Infra", "default") == "ml_infra"
    for bad in ("runstream://host:9092", "runstream://?team=a&team=b", "runstream://?bootstrap=x", "http://x"):
        with pytest.raises(UsageError):
            team_from_uri(bad, "default")
    with pytest.raises(UsageError, match="not a team name"):
        team_from_uri("runstream://?team=1%27%20OR%201=1", "default")


@pytest.mark.parametrize("hostile", HOSTILE_FILTERS)
def test_hostile_filter_values_are_bound_never_spliced(hostile: str) -> None:
    sql, parameters = search_sql("vision", ["p"], hostile, ["metrics.`x) DESC; DROP TABLE runs --` ASC"], 10, 0)
    # The SQL text holds only placeholders: nothing the caller typed is in it.
    for fragment in ("OR 1=1", "DROP", "'adam'", "owner", "x'"):
        assert fragment not in sql
    placeholders = set(re.findall(r"\{(\w+):", sql))
    assert placeholders == set(parameters)
    assert "DROP TABLE runs --" in parameters.values() or "x) DESC; DROP TABLE runs --" in parameters.values()


def test_statements_beyond_one_filter_are_refused() -> None:
    with pytest.raises(MlflowException):
        search_sql("vision", ["p"], "params.a = 'b'; DROP TABLE runs", None, 10, 0)
    with pytest.raises(MlflowException, match="runstream supports"):
        search_sql("vision", ["p"], "params.a > 'b'", None, 10, 0)
    with pytest.raises(MlflowException, match="runstream supports"):
        search_sql("vision", ["p"], "datasets.name = 'b'", None, 10, 0)


@pytest.fixture
def runstream_env(pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """This process reads the test's store through MLflow, as a notebook would (RUNSTREAM_* from the env)."""
    for name, value in pipeline_settings.as_env().items():
        monkeypatch.setenv(name, value)
    yield pipeline_settings
    query.close()
    mlflow.set_tracking_uri(None)


def test_mlflow_scripts_write_through_runstream_and_read_back(
    runstream_env: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = runstream_env
    worker = worker_factory(settings)
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "mlflow_tracking.py")],
        env={**os.environ, **settings.as_env(), "RUNSTREAM_TEAM": "research"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ids = dict(re.findall(r"^(RUN|FAILED|AUTOLOG) (\w+)$", out.stdout, re.MULTILINE))
    assert "PARAM-REFUSED INVALID_PARAMETER_VALUE" in out.stdout
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0

    # What arrived, row for row, as any runstream run: SQL on the tables.
    sql = clickhouse_factory(settings)
    points = sql.query(
        "SELECT step, key, value FROM metrics WHERE run_id = {r:String} ORDER BY key, step",
        parameters={"r": ids["RUN"]},
    ).result_rows
    assert [tuple(p) for p in points] == [
        (0, "acc", 0.5),
        (1, "acc", 0.6),
        (2, "acc", 0.7),
        (5, "batch_metric", 7.0),
        (0, "loss", 1.0),
        (1, "loss", 0.5),
        (2, "loss", 1 / 3),
        (0, "lr", 0.01),
        (1, "lr", 0.01),
        (2, "lr", 0.01),
        (0, "val_loss", 2.0),
        (1, "val_loss", 1.0),
        (2, "val_loss", 2 / 3),
    ]
    (state,) = sql.query(
        "SELECT team, project, name, status FROM runs FINAL WHERE run_id = {r:String}", parameters={"r": ids["RUN"]}
    ).result_rows
    assert tuple(state) == ("research", "mlflow-quickstart", "baseline", "finished")
    sql.close()

    # And through MLflow's own client.
    mlflow.set_tracking_uri("runstream://?team=research")
    client = MlflowClient()
    assert isinstance(client._tracking_client.store, RunstreamStore)
    names = {e.name: e.experiment_id for e in client.search_experiments()}
    assert names == {"mlflow-quickstart": "mlflow-quickstart", "mlflow-autolog": "mlflow-autolog"}
    assert [e.name for e in client.search_experiments(filter_string="name LIKE '%auto%'")] == ["mlflow-autolog"]

    run = client.get_run(ids["RUN"])
    assert (run.info.status, run.info.run_name, run.info.experiment_id) == ("FINISHED", "baseline", "mlflow-quickstart")
    assert run.data.params == {
        "learning_rate": "0.01",
        "epochs": "3",
        "optimizer": "adam",
        "batch_param": "x",
    }
    assert run.data.metrics == pytest.approx(
        {"loss": 1 / 3, "acc": 0.7, "lr": 0.01, "val_loss": 2 / 3, "batch_metric": 7.0}
    )
    tags = run.data.tags
    assert {k: tags[k] for k in ("stage", "owner", "dataset", "batch_tag", "mlflow.runName")} == {
        "stage": "dev",
        "owner": "ml-team",
        "dataset": "iris",
        "batch_tag": "y",
        "mlflow.runName": "baseline",
    }
    history = client.get_metric_history(ids["RUN"], "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]

    failed = client.get_run(ids["FAILED"])
    assert (failed.info.status, failed.info.run_name, failed.data.tags["mlflow.runName"]) == (
        "FAILED",
        "fails-renamed",
        "fails-renamed",
    )
    experiments = ["mlflow-quickstart", "mlflow-autolog"]

    def search(filter_string: str = "", order_by: list[str] | None = None) -> list[str]:
        return [r.info.run_id for r in client.search_runs(experiments, filter_string, order_by=order_by)]

    assert search("metrics.acc > 0.6 and params.optimizer = 'adam'") == [ids["RUN"]]
    assert search("metrics.loss >= 1") == [ids["FAILED"]]
    assert search("attributes.status = 'FAILED'") == [ids["FAILED"]]
    assert search("tags.owner LIKE 'ml-%'") == [ids["RUN"]]
    assert search("params.optimizer != 'adam'") == []
    assert search("attributes.run_name = 'autolog'") == [ids["AUTOLOG"]]
    assert search(f"attributes.run_id IN ('{ids['RUN']}', '{ids['FAILED']}')", ["attributes.run_name"]) == [
        ids["RUN"],
        ids["FAILED"],
    ]
    assert search(order_by=["metrics.loss DESC"]) == [ids["FAILED"], ids["RUN"], ids["AUTOLOG"]]  # no loss: last
    assert search(order_by=["attributes.start_time ASC"]) == [ids["RUN"], ids["FAILED"], ids["AUTOLOG"]]
    assert search() == [ids["AUTOLOG"], ids["FAILED"], ids["RUN"]]  # MLflow's default: newest first
    mlflow.set_experiment("mlflow-quickstart")
    frame = mlflow.search_runs(filter_string="params.optimizer = 'adam'")  # the fluent API, as a DataFrame
    assert list(frame["run_id"]) == [ids["RUN"]] and list(frame["metrics.acc"]) == [pytest.approx(0.7)]
    page = client.search_runs(experiments, max_results=2, order_by=["attributes.start_time ASC"])
    rest = client.search_runs(experiments, max_results=2, order_by=["attributes.start_time ASC"], page_token=page.token)
    assert [r.info.run_id for r in [*page, *rest]] == [ids["RUN"], ids["FAILED"], ids["AUTOLOG"]]
    assert rest.token is None

    # Autologging went through the same calls: the estimator's params, its training metrics, its tags.
    auto = client.get_run(ids["AUTOLOG"])
    assert auto.data.params == {k: str(v) for k, v in LinearRegression().get_params().items()}
    assert auto.data.tags["estimator_name"] == "LinearRegression"
    assert auto.data.metrics["training_r2_score"] == pytest.approx(1.0)
    assert auto.info.status == "FINISHED"

    # Hostile filters match nothing and harm nothing.
    for hostile in HOSTILE_FILTERS:
        assert search(hostile) == []
    assert search(order_by=["metrics.`loss) DESC; DROP TABLE runs --` ASC"]) != []
    assert len(search()) == 3

    # Logging to a stored run continues it in this process, with the params and metrics it had.
    client.log_metric(ids["RUN"], "extra", 1.5, step=9)
    with pytest.raises(MlflowException, match="Changing param values"):
        client.log_param(ids["RUN"], "optimizer", "sgd")
    resumed = client.get_run(ids["RUN"])
    assert resumed.info.status == "RUNNING"
    assert resumed.data.metrics == pytest.approx(
        {"loss": 1 / 3, "acc": 0.7, "lr": 0.01, "val_loss": 2 / 3, "batch_metric": 7.0, "extra": 1.5}
    )
    client.set_terminated(ids["RUN"])
    assert client.get_run(ids["RUN"]).info.status == "FINISHED"

    # Another team sees none of it.
    mlflow.set_tracking_uri("runstream://?team=other")
    assert MlflowClient().search_runs(experiments) == []
    with pytest.raises(MlflowException, match="not found"):
        MlflowClient().get_run(ids["RUN"])


def test_default_autologging_logs_params_metrics_and_a_local_model_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mlflow.sklearn.autolog()`` with its defaults (models included): the run is complete in the spool and
    the model's files are in the local artifact folder (no broker needed offline)."""
    settings = Settings(_env_file=None, runs_dir=tmp_path / "runs", hardware_interval_s=0, handle_sigterm=False)  # type: ignore[call-arg]
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNSTREAM_MODE", "offline")
    mlflow.set_tracking_uri("runstream://?team=offline")  # MLflow keeps one store per URI: a URI of its own
    try:
        mlflow.set_experiment("autolog-default")
        mlflow.sklearn.autolog(disable=False, silent=True)
        x = [[1, 1], [1, 2], [2, 2], [2, 3]]
        LinearRegression().fit(x, [6, 8, 9, 11])
        last = mlflow.last_active_run()
        assert last is not None
        run = mlflow.get_run(last.info.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in LinearRegression().get_params().items()}
        assert run.data.metrics["training_r2_score"] == pytest.approx(1.0)
        models = list((settings.runs_dir.parent / "mlflow-artifacts" / "models").glob("m-*/model.pkl"))
        assert len(models) == 1
        assert list((settings.runs_dir / last.info.run_id / "spool").iterdir())
    finally:
        mlflow.sklearn.autolog(disable=True)
        mlflow.set_tracking_uri(None)
