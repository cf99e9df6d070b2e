"""`runstream import tensorboard` on event files written by real writers (tensorboardX; TensorBoard's own
writer with TF2 scalar summaries), damaged ones included, on the real broker and engine."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from clickhouse_connect.driver.client import Client

from runstream._history import digest
from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings
from tests.importers.helpers import import_cli, points, runs

T0 = 1_700_000_000.0  # seconds, as TensorBoard keeps wall times
PROJECT = "vision-tb"
LONG = "a" * 200 + "/" + "b" * 100  # a run name over the 256 characters a name may hold


def run_id(name: str) -> str:
    return f"tb-{digest('tensorboard', PROJECT, name)[:24]}"


def write_tensorboardx(directory: Path, values: list[float], *, others: bool = True) -> None:
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=str(directory)) as writer:
        if others:  # no scalars: counted
            writer.add_histogram("weights", np.arange(10.0), global_step=0, walltime=T0)
            writer.add_text("notes", "hello", global_step=0, walltime=T0)
        for step, value in enumerate(values):
            writer.add_scalar("train/loss", value, global_step=step * 10, walltime=T0 + step)


def write_tf2(directory: Path) -> None:
    """TF2-style scalars (a tensor, the plugin named in the tag's first value only), by TensorBoard's writer."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(directory))
    for step in range(3):
        summary = scalar_pb("eval/acc", np.float32(0.25 * step))
        if step:
            summary.value[0].ClearField("metadata")  # as TF2 writers do after the first value
        writer.add_event(event_pb2.Event(wall_time=T0 + 100 + step, step=step, summary=summary))
    writer.close()


def event_file(directory: Path) -> Path:
    (path,) = directory.glob("*tfevents*")
    return path


def first_event_ms(directory: Path) -> int:
    """When the writer opened the file (its first event, the file version), read by TensorBoard's loader."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return round(next(iter(EventFileLoader(str(event_file(directory))).Load())).wall_time * 1000)


def test_scalars_of_every_run_directory_arrive_with_step_and_wall_time(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    write_tensorboardx(logs / "resnet" / "lr_0.1", [2.0, 1.0, 0.5])
    write_tensorboardx(logs / "resnet" / "lr_0.01", [3.0, math.nan, math.inf])
    write_tf2(logs / "v2")
    write_tensorboardx(logs / LONG, [7.0])
    # Damage: a record whose checksum fails (the events before it are read), and a file cut mid-record.
    write_tensorboardx(logs / "corrupt", [1.0, 2.0, 3.0], others=False)
    corrupt = event_file(logs / "corrupt")
    data = bytearray(corrupt.read_bytes())
    data[-20] ^= 0xFF  # inside the last record
    corrupt.write_bytes(bytes(data))
    write_tensorboardx(logs / "cut", [4.0, 5.0], others=False)
    cut = event_file(logs / "cut")
    cut.write_bytes(cut.read_bytes()[:-5])
    (logs / "empty").mkdir()  # no event files: no run

    worker = worker_factory(pipeline_settings)
    first = import_cli(pipeline_settings, "tensorboard", str(logs), "--team", "vision", "--project", PROJECT, status=1)
    assert "failed event crc32 check" in first.stderr and str(corrupt) in first.stderr
    assert first.stdout.startswith("imported 6 run(s) from tensorboard: 13 points")
    assert "skipped 6 summaries that are no scalar (histograms, images, audio, text, hparams)" in first.stdout
    assert "skipped 1 event files cut short (read up to the cut)" in first.stdout
    assert "skipped 1 run names shortened or cleaned (kept, changed)" in first.stdout
    again = import_cli(pipeline_settings, "tensorboard", str(logs), "--team", "vision", "--project", PROJECT, status=1)
    assert again.stdout == first.stdout
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)

    def series(name: str, key: str, values: list[float], step_every: int = 10, at: float = T0) -> list[tuple]:
        return [
            (run_id(name), key, i * step_every, round((at + i) * 1000), "nan" if math.isnan(v) else v)
            for i, v in enumerate(values)
        ]

    expected = [
        *series("resnet/lr_0.1", "train/loss", [2.0, 1.0, 0.5]),
        *series("resnet/lr_0.01", "train/loss", [3.0, math.nan, math.inf]),
        *series("v2", "eval/acc", [0.0, 0.25, 0.5], step_every=1, at=T0 + 100),
        *series(LONG, "train/loss", [7.0]),
        *series("corrupt", "train/loss", [1.0, 2.0]),  # the third record is the damaged one
        *series("cut", "train/loss", [4.0]),
    ]
    assert points(client, "vision") == sorted(expected)
    stored = {row[1]: row for row in runs(client, "vision")}
    assert set(stored) == {run_id(name) for name in ("resnet/lr_0.1", "resnet/lr_0.01", "v2", LONG, "corrupt", "cut")}
    directory = logs / "resnet" / "lr_0.1"
    assert stored[run_id("resnet/lr_0.1")] == (
        PROJECT,
        run_id("resnet/lr_0.1"),
        "resnet/lr_0.1",
        "",
        "",
        "",
        {},
        "finished",
        round(T0 * 1000),  # the scalars' wall times come before the writer's own first event
        first_event_ms(directory),
    )
    long_name = stored[run_id(LONG)][2]
    assert len(long_name) == 256 and long_name == "…" + LONG[-255:]


def test_with_kafka_away_the_import_waits_on_disk_for_runstream_sync(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    from tests.fixtures.kafka import free_port

    logs = tmp_path / "logs"
    write_tensorboardx(logs / "a", [1.0, 2.0], others=False)
    away = pipeline_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    out = import_cli(away, "tensorboard", str(logs), "--team", "vision", "--project", PROJECT, status=1)
    assert "cannot reach Kafka" in out.stderr and "runstream sync" in out.stderr
    imports = pipeline_settings.runs_dir / "imports"
    assert len(list(imports.iterdir())) == 1

    worker = worker_factory(pipeline_settings)
    sync = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "sync", str(imports)],
        env={**os.environ, **pipeline_settings.as_env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert sync.stdout.startswith("sent 3 record(s) from 1 spool(s)")
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)
    assert points(client, "vision") == [
        (run_id("a"), "train/loss", 0, round(T0 * 1000), 1.0),
        (run_id("a"), "train/loss", 10, round(T0 * 1000) + 1000, 2.0),
    ]
    assert [row[7] for row in runs(client, "vision")] == ["finished"]
