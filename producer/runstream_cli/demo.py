"""``runstream demo``: two teams' simulated training jobs through Kafka and the worker into the
embedded ClickHouse, then a comparison table of the runs read back from it."""

from __future__ import annotations

import math
import random
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import runstream
from runstream.settings import Settings
from runstream_worker.settings import WorkerSettings

_S = TypeVar("_S", Settings, WorkerSettings)


@dataclass(frozen=True)
class SimulatedJob:
    team: str
    project: str
    name: str
    config: dict[str, Any]
    fails_at: float | None = None  # fraction of steps after which the job raises


JOBS = (
    SimulatedJob("vision", "resnet50", "baseline", {"optimizer": {"name": "sgd", "lr": 0.1}, "batch_size": 256}),
    SimulatedJob("vision", "resnet50", "lr-0.03", {"optimizer": {"name": "sgd", "lr": 0.03}, "batch_size": 256}),
    SimulatedJob("vision", "resnet50", "adamw", {"optimizer": {"name": "adamw", "lr": 0.001}, "batch_size": 128}),
    SimulatedJob("nlp", "bert-finetune", "base", {"optimizer": {"name": "adamw", "lr": 3e-5}, "batch_size": 32}),
    SimulatedJob("nlp", "bert-finetune", "warmup", {"optimizer": {"name": "adamw", "lr": 5e-5}, "batch_size": 32}),
    SimulatedJob(
        "nlp", "bert-finetune", "high-lr", {"optimizer": {"name": "adamw", "lr": 1e-3}, "batch_size": 64}, 0.6
    ),
)


class DivergedError(RuntimeError):
    """The simulated job blew up, as high learning rates do."""


def simulate(job: SimulatedJob, steps: int, settings: Settings, group: str, advance: Any) -> None:
    """One training job: a noisy decaying loss, rising accuracy, a learning-rate schedule."""
    rng = random.Random(f"{job.team}/{job.name}")
    step = 0
    lr = float(job.config["optimizer"]["lr"])
    speed = 3.0 + 20 * min(lr, 0.05) + rng.random()
    try:
        with runstream.init(
            project=job.project,
            team=job.team,
            name=job.name,
            group=group,
            tags=["demo"],
            config=job.config,
            settings=settings,
        ) as run:
            for step in range(steps):
                progress = step / steps
                if job.fails_at is not None and progress >= job.fails_at:
                    raise DivergedError(f"{job.name}: loss is NaN at step {step}")
                loss = 2.5 * math.exp(-speed * progress) + 0.1 + rng.gauss(0, 0.02)
                acc = 1.0 - 0.9 * math.exp(-speed * progress * 0.8) - rng.random() * 0.01
                run.log({"train": {"loss": loss, "acc": acc}, "lr": lr * (1 - progress)}, step=step)
                if step % 50 == 0:
                    run.log({"eval": {"loss": loss * 1.1, "acc": acc * 0.97}}, step=step)
                advance()
                time.sleep(0.0005)
    except DivergedError:
        for _ in range(step, steps):  # the run is recorded as failed; the demo goes on
            advance()


RUN_TABLE_SQL = """
SELECT r.team, r.project, r.name, r.status,
       m.steps, m.points, p.lr, p.optimizer,
       m.last_loss, m.best_acc,
       dateDiff('millisecond', r.started_at, r.ended_at) / 1000 AS seconds
FROM (SELECT * FROM runs FINAL WHERE run_group = {group:String}) AS r
LEFT JOIN (
    SELECT run_id, max(step) + 1 AS steps, count() AS points,
           argMaxIf(value, step, key = 'train/loss') AS last_loss,
           maxIf(value, key = 'eval/acc') AS best_acc
    FROM metrics WHERE run_id IN (SELECT run_id FROM runs WHERE run_group = {group:String}) GROUP BY run_id
) AS m ON m.run_id = r.run_id
LEFT JOIN (
    SELECT run_id, anyIf(value, key = 'optimizer.lr') AS lr, anyIf(value, key = 'optimizer.name') AS optimizer
    FROM params FINAL GROUP BY run_id
) AS p ON p.run_id = r.run_id
ORDER BY r.team, r.project, m.best_acc DESC
"""

HARDWARE_SQL = """
SELECT count(), uniqExact(key) FROM hardware
WHERE run_id IN (SELECT run_id FROM runs WHERE run_group = {group:String})
"""


def _updated(settings: _S, changes: dict[str, Any]) -> _S:
    """``settings`` with those of ``changes`` that it has, validated like any other value."""
    mine = {name: value for name, value in changes.items() if name in type(settings).model_fields}
    return type(settings).model_validate({**settings.model_dump(), **mine})


def run_demo(
    base: Settings, worker_base: WorkerSettings, steps: int = 400, workdir: Path = Path(".runstream/demo")
) -> int:
    """Embedded ClickHouse (the default): a fresh database under ``workdir`` and a worker of its own.
    A ClickHouse server DSN: the jobs go to the configured topics, for the stack's running worker."""
    from runstream_cli.worker_process import WorkerProcess
    from runstream_core.clickhouse import connect
    from runstream_worker.lag import wait_caught_up

    console = Console(width=max(Console().width, 120))
    group = f"demo-{time.strftime('%Y%m%d%H%M%S')}"
    changes: dict[str, Any] = {"heartbeat_interval_s": 5.0, "hardware_interval_s": 1.0}
    if base.target.embedded:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        changes |= {
            "clickhouse_url": f"chdb://{(workdir / 'clickhouse').resolve()}",
            "topic_prefix": f"{group}.",
            "worker_group": group,
            "runs_dir": (workdir / "runs").resolve(),
        }
    settings, worker_settings = _updated(base, changes), _updated(worker_base, changes)
    worker: WorkerProcess | None = None
    console.print(f"[bold]runstream demo[/] Kafka {settings.kafka_bootstrap}, ClickHouse {settings.clickhouse_url}")
    if settings.target.embedded:
        worker = WorkerProcess(worker_settings, workdir / "worker.log").start().wait_ready()
    started = time.monotonic()
    try:
        _train_all(settings, steps, group, console)
        with console.status("waiting for the worker to write everything to ClickHouse"):
            wait_caught_up(worker_settings, timeout_s=180)
        elapsed = time.monotonic() - started
    finally:
        code = worker.stop() if worker is not None else 0
    if code != 0 and worker is not None:
        console.print(f"[red]worker exited with {code}; see {worker.log_path}[/]")
        return 1
    client = connect(settings)  # embedded: the worker has exited, so this process may open the path
    try:
        rows = client.query(RUN_TABLE_SQL, parameters={"group": group}).result_rows
        total = sum(row[5] for row in rows)
        readings, keys = client.query(HARDWARE_SQL, parameters={"group": group}).result_rows[0]
    finally:
        client.close()
    console.print(_comparison_table(rows))
    console.print(f"{total:,} metric points stored in {elapsed:.1f}s end to end")
    console.print(f"{readings:,} hardware readings of {keys} kinds (CPU, memory, disk, network, GPUs if any)")
    return 0


def _train_all(settings: Settings, steps: int, group: str, console: Console) -> None:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"training {len(JOBS)} runs of 2 teams", total=steps * len(JOBS))
        lock = threading.Lock()

        def advance() -> None:
            with lock:
                progress.advance(task)

        threads = [threading.Thread(target=simulate, args=(job, steps, settings, group, advance)) for job in JOBS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _comparison_table(rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title="Run comparison (read back from ClickHouse)")
    for column in (
        "team",
        "project",
        "run",
        "status",
        "steps",
        "points",
        "optimizer",
        "lr",
        "last loss",
        "best eval acc",
    ):
        table.add_column(column, justify="right" if column in {"steps", "points", "lr"} else "left")
    style = {"finished": "green", "failed": "red", "running": "yellow"}
    for team, project, name, status, n_steps, points, lr, optimizer, last_loss, best_acc, _seconds in rows:
        table.add_row(
            team,
            project,
            name,
            f"[{style.get(status, 'white')}]{status}[/]",
            str(n_steps),
            f"{points:,}",
            optimizer,
            lr,
            f"{last_loss:.4f}",
            f"{best_acc:.4f}",
        )
    return table
