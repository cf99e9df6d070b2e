"""Sustained ingest of the whole pipeline: SDK -> Kafka -> worker -> rows in embedded ClickHouse,
with freshness, against MLflow's tracking server measured in the same run.

Simulated training jobs (one process each) log 10 metrics per step, together offering ``--rate``
points per second for ``--seconds``; one worker writes them to a fresh embedded ClickHouse. When
the worker has committed everything, the figures come from the stored rows themselves:

- ``points_per_s``: stored points / (last insert time - first log() time): what the pipeline sustained;
- ``freshness_p50_s`` / ``freshness_p99_s``: per point, the time from its ``log()`` call (the row's
  ``ts``) to the insert that made it visible (``ingested_records.ingested_at``, set by ClickHouse);
- ``engine_points_per_s``: the same rows (up to 2 million of them, in the order takes hold them)
  inserted once more, in the same run, into a bare MergeTree of the same columns (no views) by the
  fastest path the engine has (an Arrow table through chDB's ``Python()``): the ceiling here;
  ``fraction_of_engine_limit`` is the pipeline's share of it;
- ``worker_peak_rss_mb``: the worker process's peak resident memory (VmHWM);
- ``cpu_s``: where the machine's CPU went from the first ``log()`` until everything was committed (the
  jobs, the Kafka broker, the worker), with ``cpu_available_s`` (cores x that time) and the worker's
  ``worker_cpu_s_per_million_points``: the profile that says which part holds the rate.

Peer: an MLflow tracking server (sqlite backend, one worker) fed the same kind of points with
``log_batch`` of 1,000 metrics; skipped (null) where mlflow is not installed (it lives in the
``bench`` extra). Uses the broker RUNSTREAM_KAFKA_BOOTSTRAP names, or starts one of its own
(``deploy/kafka/kafka.sh``) and stops it at the end. Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from runstream.run import Run
from runstream.settings import Settings
from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect, engine_connection
from runstream_worker.lag import wait_caught_up
from runstream_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]

ENGINE_LIMIT_TABLE = "engine_limit"

FIGURES_SQL = """
WITH visible AS (
    SELECT producer_id, seq, min(ingested_at) AS at FROM ingested_records GROUP BY producer_id, seq
)
SELECT count(),
       toUnixTimestamp64Milli(min(m.ts)),
       toUnixTimestamp64Milli(max(v.at)),
       quantilesExact(0.5, 0.99)(toUnixTimestamp64Milli(v.at) - toUnixTimestamp64Milli(m.ts))
FROM metrics AS m
INNER JOIN visible AS v ON m.producer_id = v.producer_id AND m.seq = v.seq
"""


class BenchSettings(Settings, WorkerSettings):
    """The SDK's and the worker's fields in one object: the jobs read the first, the worker the second."""


def job(index: int, seconds: float, keys: int, rate: float, settings_json: str) -> tuple[int, int, float]:
    """One training job: log ``rate`` points/s for ``seconds``, then finish. Returns (logged, undelivered,
    CPU seconds of the process, its SDK threads included)."""
    settings = Settings.model_validate_json(settings_json)
    names = [f"metric_{k}" for k in range(keys)]
    run = Run(project="bench", team=f"team_{index % 3}", name=f"job-{index}", settings=settings)
    steps_per_s = rate / keys
    started = time.monotonic()
    deadline = started + seconds
    step = 0
    while (now := time.monotonic()) < deadline:
        due = int((now - started) * steps_per_s) + 1  # steps this job should have logged by now
        while step < due:
            run.log({name: step * 0.5 + k for k, name in enumerate(names)}, step=step)
            step += 1
        time.sleep(0.001)
    report = run.finish(timeout=300)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return step * keys, report.pending_records + report.overflow_points, usage.ru_utime + usage.ru_stime


def run_pipeline(args: argparse.Namespace, workdir: Path, console: Console) -> dict[str, Any]:
    unique = uuid.uuid4().hex[:8]
    settings = BenchSettings().model_copy(
        update={
            "clickhouse_url": f"chdb://{workdir / 'clickhouse'}",
            "topic_prefix": f"bench-{unique}.",
            "worker_group": f"bench-{unique}",
            "worker_batch_records": 200,
            "worker_commit_interval_s": 0.5,
            "worker_flush_interval_s": 0.5,
            "runs_dir": workdir / "runs",
            "hardware_interval_s": 0,
        }
    )
    console.print(
        f"ingest: {args.jobs} jobs x {args.keys} metrics per step at {args.rate:,.0f} points/s in all, "
        f"for {args.seconds:g}s"
    )
    worker = WorkerProcess(settings, workdir / "worker.log").start().wait_ready()
    peak_rss_mb = 0.0
    broker_cpu_before = sum(map(cpu_seconds, broker_pids()))
    worker_cpu_before = cpu_seconds(worker.pid)
    phase_started = time.monotonic()
    try:
        ctx = multiprocessing.get_context("spawn")
        rate = args.rate / args.jobs
        with ctx.Pool(args.jobs) as pool:
            results = pool.starmap(
                job, [(i, args.seconds, args.keys, rate, settings.model_dump_json()) for i in range(args.jobs)]
            )
        logged = sum(points for points, _, _ in results)
        if any(undelivered for _, undelivered, _ in results):
            raise SystemExit(f"jobs left points undelivered or dropped: {results}")
        with console.status("waiting for the worker to commit everything"):
            wait_caught_up(settings, timeout_s=900, poll_s=0.2)
        phase_s = time.monotonic() - phase_started
        cpu = {
            "jobs": round(sum(cpu_s for _, _, cpu_s in results), 1),
            "broker": round(sum(map(cpu_seconds, broker_pids())) - broker_cpu_before, 1),
            "worker": round(cpu_seconds(worker.pid) - worker_cpu_before, 1),
        }
        peak_rss_mb = peak_rss(worker.pid)
    finally:
        worker.stop()
    client = connect(settings)
    try:
        stored, first_ms, last_ms, (p50_ms, p99_ms) = client.query(FIGURES_SQL).result_rows[0]
    finally:
        client.close()
    if stored != logged:
        raise SystemExit(f"stored {stored:,} points, logged {logged:,}; see {worker.log_path}")
    seconds = (last_ms - first_ms) / 1000
    with console.status("the same rows into a bare MergeTree: the engine's limit"):
        engine_rate = engine_limit(settings)
    return {
        "points": stored,
        "seconds": round(seconds, 3),
        "points_per_s": round(stored / seconds),
        "engine_points_per_s": round(engine_rate),
        "fraction_of_engine_limit": round(stored / seconds / engine_rate, 3),
        "freshness_p50_s": round(p50_ms / 1000, 3),
        "freshness_p99_s": round(p99_ms / 1000, 3),
        "worker_peak_rss_mb": round(peak_rss_mb, 1),
        "cpu_s": cpu,
        "cpu_available_s": round(phase_s * (os.cpu_count() or 1), 1),
        "worker_cpu_s_per_million_points": round(cpu["worker"] / stored * 1e6, 3),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pids() -> list[int]:
    """The Kafka brokers running here (their JVMs' main class is kafka.Kafka)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def peak_rss(pid: int) -> float:
    """Peak resident memory of process ``pid`` in MiB (Linux's VmHWM; 0 where /proc has none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def engine_limit(settings: BenchSettings) -> float:
    """Points per second the engine takes the stored metric rows at, into a MergeTree of the same
    columns with no views, as one Arrow table through ``Python()`` (the worker's own path, less
    the views); the worker has stopped, so the engine is this process's."""
    engine = engine_connection(settings)
    try:
        columns = "team, project, run_id, key, step, ts, value, producer_id, seq, rank"
        rows = engine.query(f"SELECT {columns} FROM metrics", "ArrowTable")
        engine.query(f"CREATE TABLE {ENGINE_LIMIT_TABLE} AS metrics")  # columns, codecs, order: no views
        started = time.perf_counter()
        engine.query(f"INSERT INTO {ENGINE_LIMIT_TABLE} ({columns}) SELECT {columns} FROM Python(rows)")
        seconds = time.perf_counter() - started
        engine.query(f"DROP TABLE {ENGINE_LIMIT_TABLE}")
        return float(rows.num_rows / seconds)
    finally:
        engine.close()


@contextlib.contextmanager
def broker(workdir: Path, console: Console) -> Iterator[None]:
    """The broker RUNSTREAM_KAFKA_BOOTSTRAP names, or one started here for the run."""
    if os.environ.get("RUNSTREAM_KAFKA_BOOTSTRAP"):
        yield
        return
    script = ROOT / "deploy" / "kafka" / "kafka.sh"
    directory = workdir / "kafka"
    with console.status("starting a Kafka broker (deploy/kafka/kafka.sh)"):
        started = subprocess.run(
            [str(script), "up", "--dir", str(directory)], capture_output=True, text=True, check=True
        )
    os.environ["RUNSTREAM_KAFKA_BOOTSTRAP"] = started.stdout.strip().splitlines()[-1]
    try:
        yield
    finally:
        subprocess.run([str(script), "down", "--dir", str(directory)], capture_output=True, check=False)
        del os.environ["RUNSTREAM_KAFKA_BOOTSTRAP"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_mlflow(points: int, keys: int, workdir: Path, console: Console) -> float | None:
    """Points per second an MLflow tracking server (sqlite) takes through ``log_batch`` of 1,000 metrics."""
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError:
        console.print("[yellow]mlflow not installed (bench extra): MLflow figures are null[/]")
        return None
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--default-artifact-root",
            str(workdir / "mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    console.print("[red]mlflow server did not start: MLflow figures are null[/]")
                    return None
                time.sleep(0.5)
        client = MlflowClient(tracking_uri=url)
        run_id = client.create_run(client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")).info.run_id
        names = [f"metric_{k}" for k in range(keys)]
        steps_per_batch = 1000 // keys
        started = time.perf_counter()
        sent = 0
        step = 0
        with console.status(f"MLflow server: log_batch of 1,000 metrics, {points:,} points"):
            while sent < points:
                now_ms = int(time.time() * 1000)
                batch = [
                    Metric(name, s * 0.5 + k, now_ms, s)
                    for s in range(step, step + steps_per_batch)
                    for k, name in enumerate(names)
                ]
                client.log_batch(run_id, metrics=batch)
                sent += len(batch)
                step += steps_per_batch
        seconds = time.perf_counter() - started
        stored = len(client.get_metric_history(run_id, names[0])) * keys
        if stored != sent:
            raise SystemExit(f"MLflow stored {stored:,} points, sent {sent:,}")
        return sent / seconds
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the jobs log")
    parser.add_argument("--rate", type=float, default=1_000_000, help="points per second offered, all jobs together")
    parser.add_argument("--mlflow-points", type=int, default=200_000, help="points sent to the MLflow server")
    parser.add_argument("--quick", action="store_true", help="a run of well under a minute")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.seconds, args.mlflow_points = 4, 10.0, 20_000

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="runstream-bench-ingest-") as tmp:
        workdir = Path(tmp)
        figures: dict[str, Any] = {
            "bench": "ingest",
            "jobs": args.jobs,
            "keys": args.keys,
            "offered_points_per_s": args.rate,
        }
        with broker(workdir, console):
            figures.update(run_pipeline(args, workdir, console))
        mlflow_rate = run_mlflow(args.mlflow_points, args.keys, workdir, console)
    figures["mlflow_points_per_s"] = round(mlflow_rate) if mlflow_rate else None
    figures["speedup_vs_mlflow"] = round(figures["points_per_s"] / mlflow_rate, 1) if mlflow_rate else None
    console.print(
        f"runstream: {figures['points']:,} points at {figures['points_per_s']:,} points/s end to end, "
        f"freshness p50 {figures['freshness_p50_s']}s p99 {figures['freshness_p99_s']}s; "
        f"the engine alone takes {figures['engine_points_per_s']:,} points/s "
        f"({figures['fraction_of_engine_limit']:.0%} of it reached); "
        f"worker peak RSS {figures['worker_peak_rss_mb']} MiB"
    )
    cpu = figures["cpu_s"]
    console.print(
        f"CPU seconds until committed: jobs {cpu['jobs']}, broker {cpu['broker']}, worker {cpu['worker']} "
        f"of {figures['cpu_available_s']} available; the worker {figures['worker_cpu_s_per_million_points']} s "
        "per million points"
    )
    if mlflow_rate:
        console.print(f"MLflow server: {mlflow_rate:,.0f} points/s -> runstream is {figures['speedup_vs_mlflow']}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
