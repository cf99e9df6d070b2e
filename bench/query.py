"""Query speed at scale: the run table and a 10-run curve overlay, against MLflow in the same run.

Loads ``--runs`` runs x 5 metrics x ``--steps`` steps (default 1,000 x 5 x 10,000 = 50 million
points) into a fresh embedded ClickHouse through the same migrations and rollups the worker uses,
then times (median of 5):

- ``run_table_ms``: every run whose optimizer param is "adamw", with its last loss and accuracy,
  sorted by last loss (from ``run_latest``, one row per run);
- ``overlay_ms``: the loss curves of 10 runs, each downsampled to at most 1,000 points (from the
  step-bucket rollup, at the finest level that fits).

The same two queries are also timed through the embedded engine's ClickHouse HTTP endpoint (what
Grafana and notebooks use while a worker runs), with its sign-in, parser checks, per-request
session and limits: ``endpoint_run_table_ms`` and ``endpoint_overlay_ms``.

MLflow (sqlite store) gets the same 1,000 runs, params and metrics, with full-length histories for
the 10 overlay runs and ``--mlflow-steps`` steps for the others (loading 50 million points into
MLflow would take hours). ``search_runs`` depends on run count and latest values, not on history
length, so MLflow's figures here are, if anything, flattering to it. ``mlflow_run_table_ms`` is
``search_runs`` with the same filter and order; ``mlflow_overlay_ms`` is ``get_metric_history``
of the 10 runs. MLflow figures are null where mlflow is not installed (``bench`` extra).
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from runstream_core.buckets import finest_level, steps_per_bucket
from runstream_core.clickhouse import connect
from runstream_worker.migrate import migrate
from runstream_worker.settings import WorkerSettings

METRICS = ("loss", "acc", "lr", "grad_norm", "throughput")
OPTIMIZERS = ("adamw", "sgd", "lion")
T0_MS = 1_760_000_000_000
TARGET_POINTS = 1000
IDENTITY = ("bench", "query")  # team, project

# The one-row-per-run table read directly (the run_table view adds plain-value maps on top).
RUN_TABLE_SQL = """
SELECT run_id, state.3 AS name, params['optimizer'].2 AS optimizer, metrics['loss'].3 AS loss,
       metrics['acc'].3 AS acc
FROM run_latest FINAL
WHERE team = 'bench' AND project = 'query' AND optimizer = {optimizer:String}
ORDER BY loss
"""

OVERLAY_SQL = """
SELECT run_id, bucket * {width:Int64} AS step, sum(sum_value) / sum(points) AS value
FROM metric_buckets
WHERE team = 'bench' AND project = 'query' AND key = 'loss' AND level = {level:UInt8}
  AND run_id IN {runs:Array(String)}
GROUP BY run_id, bucket
ORDER BY run_id, bucket
"""


def value(run: int, metric: int, step: int) -> float:
    return (run % 97) * 0.01 + metric + 1.0 / (step + 1)


def curve_level(steps: int, target: int = TARGET_POINTS) -> int:
    """The finest bucket level that draws ``steps`` in <= ``target`` points."""
    level = finest_level(steps, target)
    if level is None:
        raise SystemExit(f"{steps} steps need more than {target} points at the coarsest level")
    return level


def load_runstream(settings: WorkerSettings, runs: int, steps: int, console: Console) -> None:
    migrate(settings)
    client = connect(settings)
    chunk = max(1, 1_000_000 // (steps * len(METRICS)))  # runs per insert: about a million rows
    try:
        run_columns = ["team", "project", "run_id", "name", "status", "started_at", "ended_at", "updated_at"]
        client.insert(
            "runs",
            [[*IDENTITY, f"run-{r:04d}", f"run {r}", "finished", T0_MS, T0_MS + 1, T0_MS + 1] for r in range(runs)],
            column_names=run_columns,
        )
        client.insert(
            "params",
            [["bench", "query", f"run-{r:04d}", "optimizer", OPTIMIZERS[r % 3], T0_MS] for r in range(runs)],
            column_names=["team", "project", "run_id", "key", "value", "updated_at"],
        )
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"loading {runs * steps * len(METRICS):,} points", total=runs)
            for first in range(0, runs, chunk):
                ids = range(first, min(first + chunk, runs))
                n = len(ids) * len(METRICS) * steps
                columns: list[list[Any]] = [["bench"] * n, ["query"] * n, [], [], [], [], []]
                for r in ids:
                    for m, key in enumerate(METRICS):
                        columns[2].extend([f"run-{r:04d}"] * steps)
                        columns[3].extend([key] * steps)
                        columns[4].extend(range(steps))
                        columns[5].extend(range(T0_MS, T0_MS + steps))
                        columns[6].extend(value(r, m, s) for s in range(steps))
                client.insert(
                    "metrics",
                    columns,
                    column_names=["team", "project", "run_id", "key", "step", "ts", "value"],
                    column_oriented=True,
                )
                progress.advance(task, len(ids))
        client.command("OPTIMIZE TABLE metric_summary FINAL")
        client.command("OPTIMIZE TABLE metric_buckets FINAL")
        client.command("OPTIMIZE TABLE run_latest FINAL")
    finally:
        client.close()


def median_ms(action: Callable[[], Any], repeats: int = 5) -> float:
    action()  # warm caches, as a dashboard refresh would find them
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def time_runstream(settings: WorkerSettings, runs: int, steps: int, overlay: list[str]) -> dict[str, Any]:
    client = connect(settings)
    level = curve_level(steps)
    try:
        table = client.query(RUN_TABLE_SQL, parameters={"optimizer": "adamw"}).result_rows
        curves = client.query(
            OVERLAY_SQL, parameters={"width": steps_per_bucket(level), "level": level, "runs": overlay}
        ).result_rows
        expected_rows = len([r for r in range(runs) if r % 3 == 0])
        if len(table) != expected_rows or table != sorted(table, key=lambda row: row[3]):
            raise SystemExit(f"run table: {len(table)} rows, expected {expected_rows}, sorted by loss")
        if len(curves) > 10 * TARGET_POINTS:
            raise SystemExit(f"overlay drew {len(curves)} points")
        return {
            "run_table_ms": median_ms(lambda: client.query(RUN_TABLE_SQL, parameters={"optimizer": "adamw"})),
            "overlay_ms": median_ms(
                lambda: client.query(
                    OVERLAY_SQL, parameters={"width": steps_per_bucket(level), "level": level, "runs": overlay}
                )
            ),
            "run_table_rows": len(table),
            "overlay_points": len(curves),
        }
    finally:
        client.close()


def time_endpoint(settings: WorkerSettings, path: Path, runs: int, steps: int, overlay: list[str]) -> dict[str, Any]:
    """The same queries through the HTTP endpoint, as clickhouse-connect reaches it."""
    from runstream_worker.endpoint.config import EndpointConfig
    from runstream_worker.endpoint.server import EndpointServer

    config = EndpointConfig.from_settings(settings, path=str(path), host="127.0.0.1", port=0, writable=False)
    server = EndpointServer(config).start()
    try:
        client_settings = settings.model_copy(update={"clickhouse_url": server.url})
        figures = time_runstream(client_settings, runs, steps, overlay)
        return {"endpoint_run_table_ms": figures["run_table_ms"], "endpoint_overlay_ms": figures["overlay_ms"]}
    finally:
        server.stop()


def time_mlflow(
    workdir: Path, runs: int, steps: int, other_steps: int, overlay: set[str], console: Console
) -> dict[str, Any]:
    try:
        import mlflow
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        console.print("[yellow]mlflow not installed (bench extra): MLflow figures are null[/]")
        return {"mlflow_run_table_ms": None, "mlflow_overlay_ms": None}
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("query", artifact_location=(workdir / "mlruns").as_uri())
    ids: dict[str, str] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading MLflow", total=runs)
        for r in range(runs):
            name = f"run-{r:04d}"
            run_id = client.create_run(experiment, run_name=name).info.run_id
            ids[name] = run_id
            n_steps = steps if name in overlay else other_steps
            metrics = [
                Metric(key, value(r, m, s), T0_MS + s, s) for m, key in enumerate(METRICS) for s in range(n_steps)
            ]
            client.log_batch(run_id, params=[Param("optimizer", OPTIMIZERS[r % 3])])
            for start in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[start : start + 1000])
            client.set_terminated(run_id)
            progress.advance(task)

    def run_table() -> list[Any]:
        return list(
            client.search_runs(
                [experiment],
                filter_string="params.optimizer = 'adamw'",
                order_by=["metrics.loss ASC"],
                max_results=50000,
            )
        )

    def overlay_curves() -> list[Any]:
        return [client.get_metric_history(ids[name], "loss") for name in sorted(overlay)]

    found = run_table()
    if len(found) != len([r for r in range(runs) if r % 3 == 0]):
        raise SystemExit(f"MLflow run table has {len(found)} rows")
    return {"mlflow_run_table_ms": median_ms(run_table), "mlflow_overlay_ms": median_ms(overlay_curves)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--mlflow-steps", type=int, default=100, help="steps per metric of MLflow's non-overlay runs")
    parser.add_argument("--quick", action="store_true", help="a run of well under a minute")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps, args.mlflow_steps = 100, 2_000, 20
    console = Console(stderr=True)
    overlay = [f"run-{r:04d}" for r in range(0, args.runs, max(1, args.runs // 10))][:10]
    figures: dict[str, Any] = {"bench": "query", "runs": args.runs, "metrics": len(METRICS), "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="runstream-bench-query-") as tmp:
        workdir = Path(tmp)
        settings = WorkerSettings().model_copy(
            update={"clickhouse_url": f"chdb://{workdir / 'clickhouse'}", "state_dir": workdir / "state"}
        )
        started = time.perf_counter()
        load_runstream(settings, args.runs, args.steps, console)
        figures["load_seconds"] = round(time.perf_counter() - started, 1)
        figures.update(time_runstream(settings, args.runs, args.steps, overlay))
        figures.update(time_endpoint(settings, workdir / "clickhouse", args.runs, args.steps, overlay))
        figures.update(time_mlflow(workdir, args.runs, args.steps, args.mlflow_steps, set(overlay), console))
    for ours, theirs in (("run_table_ms", "mlflow_run_table_ms"), ("overlay_ms", "mlflow_overlay_ms")):
        figures[f"{ours.removesuffix('_ms')}_speedup_vs_mlflow"] = (
            round(figures[theirs] / figures[ours], 1) if figures[theirs] else None
        )
    console.print(
        f"run table {figures['run_table_ms']} ms (MLflow {figures['mlflow_run_table_ms']} ms); "
        f"10-curve overlay {figures['overlay_ms']} ms (MLflow {figures['mlflow_overlay_ms']} ms); "
        f"through the HTTP endpoint {figures['endpoint_run_table_ms']} ms and {figures['endpoint_overlay_ms']} ms"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
