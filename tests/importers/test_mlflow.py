"""`runstream import mlflow` on stores made by MLflow itself (a file store and SQLite), on the real broker
and engine: exact rows, original times, and a second import that changes nothing."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream import query
from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.kafka import free_port
from tests.fixtures.settings import StackSettings as Settings
from tests.importers.helpers import import_cli, params, points, run_table, runs

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def make_store(uri: str, experiment: str) -> dict[str, str]:
    """Three runs as MLflow records them: finished, failed, still running. Returns their ids by name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(experiment)
    done = client.create_run(exp, run_name="done", start_time=T0, tags={"dataset": "cifar10"}).info.run_id
    client.set_tag(done, "mlflow.source.git.commit", "abc123")
    client.set_tag(done, "mlflow.source.name", "train.py")  # a system tag with no run field: counted
    client.log_param(done, "lr", "0.001")
    client.log_param(done, "optimizer", "adamw")
    for step, value in enumerate([1.5, math.nan, math.inf, 0.25]):
        client.log_metric(done, "loss", value, timestamp=T0 + 1000 * (step + 1), step=step)
    client.log_metric(done, "acc", 0.5, timestamp=T0 + 4500, step=3)
    client.set_terminated(done, "FINISHED", end_time=T0 + 60_000)
    failed = client.create_run(exp, run_name="failed", start_time=T0 + 100_000).info.run_id
    client.log_metric(failed, "loss", 9.0, timestamp=T0 + 101_000, step=0)
    client.set_terminated(failed, "FAILED", end_time=T0 + 102_000)
    running = client.create_run(exp, run_name="running", start_time=T0 + 200_000).info.run_id
    client.log_metric(running, "loss", 3.0, timestamp=T0 + 201_000, step=7)
    return {"done": done, "failed": failed, "running": running, "user": client.get_run(done).info.user_id}


def test_mlflow_file_store_and_sqlite_runs_arrive_exactly_once_with_their_times(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 writes file stores only when asked
    file_store = tmp_path / "mlruns"
    sqlite = f"sqlite:///{tmp_path / 'mlflow.db'}"
    by_store = {"file": make_store(str(file_store), "exp-file"), "sqlite": make_store(sqlite, "exp-sqlite")}

    worker = worker_factory(pipeline_settings)
    first = import_cli(pipeline_settings, "mlflow", "--tracking-uri", str(file_store), "--team", "ML Ops")
    assert first.stdout.startswith("imported 3 run(s) from mlflow: 7 points, 2 params, 1 tags, 0 summary values")
    assert "skipped 1 MLflow system tags (mlflow.*) not mapped to a run field" in first.stdout
    import_cli(pipeline_settings, "mlflow", "--tracking-uri", sqlite, "--experiment", "exp-sqlite", "--team", "ml_ops")
    # Again, both: the same records, which the worker recognises and drops.
    import_cli(pipeline_settings, "mlflow", "--tracking-uri", str(file_store), "--team", "ml_ops")
    import_cli(pipeline_settings, "mlflow", "--tracking-uri", sqlite, "--team", "ml_ops")
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)

    # SQLite keeps +inf as the largest double (MLflow's own conversion); the file store keeps inf.
    inf = {"file": math.inf, "sqlite": 1.7976931348623157e308}
    expected_points = []
    expected_runs = []
    for store, ids in by_store.items():
        done, failed, running, user = ids["done"], ids["failed"], ids["running"], ids["user"]
        expected_points += [
            (done, "acc", 3, T0 + 4500, 0.5),
            (done, "loss", 0, T0 + 1000, 1.5),
            (done, "loss", 1, T0 + 2000, "nan"),
            (done, "loss", 2, T0 + 3000, inf[store]),
            (done, "loss", 3, T0 + 4000, 0.25),
            (failed, "loss", 0, T0 + 101_000, 9.0),
            (running, "loss", 7, T0 + 201_000, 3.0),
        ]
        project = f"exp-{store}"
        expected_runs += [
            (project, done, "done", "", user, "abc123", {"dataset": "cifar10"}, "finished", T0, T0 + 60_000),
            (project, failed, "failed", "", user, "", {}, "failed", T0 + 100_000, T0 + 102_000),
            (project, running, "running", "", user, "", {}, "running", T0 + 200_000, None),
        ]
    assert points(client, "ml_ops") == sorted(expected_points)
    assert runs(client, "ml_ops") == sorted(expected_runs)
    assert params(client, "ml_ops") == sorted(
        (ids["done"], key, value)
        for ids in by_store.values()
        for key, value in (("lr", "0.001"), ("optimizer", "adamw"))
    )
    # The one-row-per-run table dashboards and runstream.query read: state, params and last values.
    done = by_store["file"]["done"]
    assert [row for row in run_table(client, "ml_ops") if row[0] == done] == [
        (done, "finished", {"lr": "0.001", "optimizer": "adamw"}, {"acc": 0.5, "loss": 0.25}, {"acc": 3, "loss": 3})
    ]
    try:
        table = query.runs(team="ml_ops", project="exp-file", settings=pipeline_settings, order_by="loss")
        table = table.sort_values("started_at")
        assert list(table["name"]) == ["done", "failed", "running"]
        assert list(table["metric.loss"]) == [0.25, 9.0, 3.0] and table["param.lr"][0] == "0.001"
    finally:
        query.close()


def test_a_store_that_does_not_exist_is_a_clear_error_and_nothing_is_created(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    out = import_cli(
        pipeline_settings, "mlflow", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", "--team", "t", status=1
    )
    assert "does not exist" in out.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server (its own process, a SQLite backend) on a free loopback port."""
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError((tmp_path / "mlflow-server.log").read_text()[-3000:])
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_mlflow_tracking_server_runs_arrive_through_its_rest_api(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    mlflow_server: str,
) -> None:
    ids = make_store(mlflow_server, "exp-server")
    worker = worker_factory(pipeline_settings)
    out = import_cli(pipeline_settings, "mlflow", "--tracking-uri", mlflow_server, "--team", "ml_ops")
    assert out.stdout.startswith("imported 3 run(s) from mlflow: 7 points, 2 params, 1 tags")
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)
    done = ids["done"]
    assert [row for row in points(client, "ml_ops") if row[0] == done] == [
        (done, "acc", 3, T0 + 4500, 0.5),
        (done, "loss", 0, T0 + 1000, 1.5),
        (done, "loss", 1, T0 + 2000, "nan"),
        (done, "loss", 2, T0 + 3000, 1.7976931348623157e308),  # the server's SQLite store, as above
        (done, "loss", 3, T0 + 4000, 0.25),
    ]
    assert {row[1]: row[7:] for row in runs(client, "ml_ops")} == {
        done: ("finished", T0, T0 + 60_000),
        ids["failed"]: ("failed", T0 + 100_000, T0 + 102_000),
        ids["running"]: ("running", T0 + 200_000, None),
    }
