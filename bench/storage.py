"""Bytes per metric point: on disk in ClickHouse's ``metrics`` table (and its rollups), and on Kafka's wire.

Writes ``--points`` realistic points (default 1M) into a fresh embedded ClickHouse migrated as
usual, in inserts the size the worker makes (``worker_batch_records`` records of one flush
interval's points each), then reads the sizes ClickHouse reports for the active parts, before and
after the parts are merged (``OPTIMIZE ... FINAL``: what a table looks like once background merges
caught up). Also encodes the same points as the SDK does (``MetricBatch`` records of one flush
interval, msgpack) and compresses each record with lz4 as the producer does, for Kafka's share.

The points: ``--runs`` runs of ``--metrics`` metrics each, logged at 10 steps/s (all metrics of a
step share its timestamp, as one ``log()`` call does), arriving interleaved as many jobs' records
do. Of the metrics, 60% are float32 tensors read with ``.item()`` (losses, accuracies: a decaying
curve plus noise), 20% float32 statistics with heavier noise (gradient norms), 10% float64 schedules
(learning rate), 10% float64 counters and rates (samples/s, epoch). Needs no broker.
Last line: one JSON object with the figures (docs/scaling.md uses them).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import lz4.frame
import numpy as np
from rich.console import Console
from rich.table import Table

from runstream.settings import Settings
from runstream_core.clickhouse import connect
from runstream_core.events import MetricBatch, encode_event
from runstream_worker.migrate import migrate
from runstream_worker.settings import WorkerSettings
from runstream_worker.sink import ClickHouseSink
from runstream_worker.tables import metrics as metrics_table
from runstream_worker.tables._points import PointColumns

STEPS_PER_S = 10
START_MS = 1_767_225_600_000  # 2026-01-01 UTC
ROLLUPS = ("metric_summary", "metric_buckets", "run_latest", "ingested_records")


def metric_names(count: int) -> list[str]:
    kinds = ["train/loss", "train/acc", "val/loss", "val/acc", "grad_norm", "lr", "samples_per_s", "epoch"]
    return [f"{kinds[i % len(kinds)]}/{i // len(kinds)}" if i >= len(kinds) else kinds[i] for i in range(count)]


def curves(rng: np.random.Generator, metrics: int, steps: int) -> np.ndarray:
    """values[metric, step] for one run, in the mix the module docstring describes."""
    step = np.arange(steps, dtype=np.float64)
    out = np.empty((metrics, steps), dtype=np.float64)
    for m in range(metrics):
        share = m / metrics
        if share < 0.6:  # float32 tensors: a decaying curve with noise
            scale, tau, floor = rng.uniform(0.5, 5), rng.uniform(steps / 8, steps), rng.uniform(0.01, 0.3)
            curve = scale * np.exp(-step / tau) + floor + rng.normal(0, 0.02 * scale, steps)
            out[m] = curve.astype(np.float32)
        elif share < 0.8:  # float32 statistics, heavy-tailed
            out[m] = rng.lognormal(0.0, 0.5, steps).astype(np.float32)
        elif share < 0.9:  # float64 schedule: warmup then cosine
            peak, warmup = rng.uniform(1e-4, 1e-3), max(1, steps // 20)
            cosine = 0.5 * (1 + np.cos(math.pi * np.clip((step - warmup) / max(1, steps - warmup), 0, 1)))
            out[m] = np.where(step < warmup, peak * (step + 1) / warmup, peak * cosine)
        else:  # float64 rates and counters
            out[m] = rng.normal(2400.0, 60.0, steps) if m % 2 else np.floor(step / 1000)
    return out


def generate(points: int, runs: int, metrics: int, seed: int = 7) -> dict[str, Any]:
    """Columns of ``points`` points, in arrival order: step by step, every run's step in turn."""
    steps = max(1, points // (runs * metrics))
    rng = np.random.default_rng(seed)
    values = np.stack([curves(rng, metrics, steps) for _ in range(runs)])  # [run, metric, step]
    names = metric_names(metrics)
    run_ids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | r).hex for r in range(runs)]
    jitter = rng.integers(0, 40, size=(runs, steps))  # ms: a step is not exactly 100 ms apart
    return {
        "steps": steps,
        "names": names,
        "run_ids": run_ids,
        "teams": [f"team_{r % 3}" for r in range(runs)],
        "values": values,
        "ts_ms": START_MS + (np.arange(steps) * (1000 // STEPS_PER_S))[None, :] + jitter,
    }


def records(data: dict[str, Any], points_per_record: int) -> list[MetricBatch]:
    """The SDK's records: per run, one per flush interval (``points_per_record`` points)."""
    out = []
    steps_per_record = max(1, points_per_record // len(data["names"]))
    for r, run_id in enumerate(data["run_ids"]):
        for seq, first in enumerate(range(0, data["steps"], steps_per_record)):
            span = range(first, min(first + steps_per_record, data["steps"]))
            out.append(
                MetricBatch(
                    producer_id=f"p-{run_id[:12]}",
                    seq=seq,
                    run_id=run_id,
                    team=data["teams"][r],
                    project="bench",
                    keys=[name for _ in span for name in data["names"]],
                    steps=[s for s in span for _ in data["names"]],
                    ts_ms=[int(data["ts_ms"][r, s]) for s in span for _ in data["names"]],
                    values=[float(data["values"][r, m, s]) for s in span for m in range(len(data["names"]))],
                )
            )
    # Arrival order: the jobs' records interleave.
    return sorted(out, key=lambda record: (record.seq, record.run_id))


def rows(batch: list[MetricBatch]) -> PointColumns:
    """The worker's rows for ``batch``, built by its own table module."""
    columns = metrics_table.columns()
    for record in batch:
        metrics_table.extend(columns, record)
    return columns


def sizes(client: Any, table: str) -> tuple[int, int, int]:
    """(rows, compressed bytes, bytes on disk) of ``table``'s active parts."""
    row = client.query(
        "SELECT sum(rows), sum(data_compressed_bytes), sum(bytes_on_disk) FROM system.parts "
        "WHERE database = currentDatabase() AND table = {t:String} AND active",
        parameters={"t": table},
    ).result_rows[0]
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)


def column_bytes(client: Any) -> dict[str, float]:
    total_rows = sizes(client, "metrics")[0] or 1
    found = client.query(
        "SELECT name, data_compressed_bytes FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'metrics' ORDER BY position"
    ).result_rows
    return {str(name): round(int(size) / total_rows, 3) for name, size in found}


def measure(args: argparse.Namespace, workdir: Path, console: Console) -> dict[str, Any]:
    data = generate(args.points, args.runs, args.metrics)
    worker = WorkerSettings(_env_file=None)  # type: ignore[call-arg]
    per_record = max(1, int(args.metrics * STEPS_PER_S * Settings(_env_file=None).flush_interval_s))  # type: ignore[call-arg]
    batch = records(data, per_record)
    points = sum(len(r.keys) for r in batch)
    wire = [encode_event(r) for r in batch]
    wire_lz4 = sum(len(lz4.frame.compress(payload)) for payload in wire)

    settings = WorkerSettings(clickhouse_url=f"chdb://{workdir / 'clickhouse'}", _env_file=None)  # type: ignore[call-arg]
    migrate(settings)
    client = connect(settings)
    try:
        started = time.perf_counter()
        take = worker.worker_batch_records
        sink = ClickHouseSink(settings)  # the worker's own insert path: Arrow columns through Python()
        for i, first in enumerate(range(0, len(batch), take)):
            sink.insert_points(
                "metrics", rows(batch[first : first + take]).arrays(), {"insert_deduplication_token": f"bench-{i}"}
            )
        insert_s = time.perf_counter() - started
        stored, _, on_disk = sizes(client, "metrics")
        client.command("OPTIMIZE TABLE metrics FINAL")
        _, merged_compressed, merged_disk = sizes(client, "metrics")
        for table in ROLLUPS:
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        rollup_disk = {table: sizes(client, table)[2] for table in ROLLUPS}
        per_column = column_bytes(client)
        uncompressed = int(
            client.query(
                "SELECT sum(data_uncompressed_bytes) FROM system.parts "
                "WHERE database = currentDatabase() AND table = 'metrics' AND active"
            ).result_rows[0][0]
        )
    finally:
        client.close()
    if stored != points:
        raise SystemExit(f"stored {stored} of {points} points")

    figures = {
        "points": points,
        "runs": args.runs,
        "metrics_per_run": args.metrics,
        "points_per_record": per_record,
        "insert_rows": take * per_record,
        "disk_bytes_per_point": round(on_disk / points, 3),
        "disk_bytes_per_point_merged": round(merged_disk / points, 3),
        "compressed_bytes_per_point_merged": round(merged_compressed / points, 3),
        "uncompressed_bytes_per_point": round(uncompressed / points, 3),
        "compression_ratio_merged": round(uncompressed / merged_compressed, 2),
        "rollups_disk_bytes_per_point": round(sum(rollup_disk.values()) / points, 3),
        "rollup_disk_bytes_per_point": {table: round(size / points, 3) for table, size in rollup_disk.items()},
        "column_bytes_per_point": per_column,
        "wire_bytes_per_point": round(sum(map(len, wire)) / points, 3),
        "wire_lz4_bytes_per_point": round(wire_lz4 / points, 3),
        "insert_points_per_s": round(points / insert_s),
    }
    table = Table(title=f"{points:,} points: {args.runs} runs x {args.metrics} metrics x {data['steps']} steps")
    table.add_column("figure")
    table.add_column("bytes per point", justify="right")
    table.add_row("metrics on disk, as inserted", f"{figures['disk_bytes_per_point']:.2f}")
    table.add_row("metrics on disk, merged", f"{figures['disk_bytes_per_point_merged']:.2f}")
    table.add_row("metrics uncompressed", f"{figures['uncompressed_bytes_per_point']:.2f}")
    table.add_row("rollups on disk, merged", f"{figures['rollups_disk_bytes_per_point']:.3f}")
    table.add_row("Kafka record (msgpack)", f"{figures['wire_bytes_per_point']:.2f}")
    table.add_row("Kafka record (lz4)", f"{figures['wire_lz4_bytes_per_point']:.2f}")
    console.print(table)
    console.print(f"compression ratio of merged metrics parts: {figures['compression_ratio_merged']}x")
    console.print(f"per column, bytes per point: {per_column}")
    console.print(f"per rollup, bytes per point: {figures['rollup_disk_bytes_per_point']}")
    console.print(f"insert: {figures['insert_points_per_s']:,} points/s (one thread, materialized views included)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--metrics", type=int, default=50)
    args = parser.parse_args()
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="runstream-storage-") as workdir:
        figures = measure(args, Path(workdir), console)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
