"""The worker's own cost per million points on one core: decoding, building columns, inserting.

No broker and no SDK: records are made here (``--runs`` x ``--keys`` x ``--steps`` points, one record
per run and ``--steps-per-record`` steps, wire format ``--wire`` 2 or 1), then handed to the worker's
steps in takes of ``--take`` records, pinned to one core and timed in process CPU time (every thread
of the process, the engine's included), which a busy machine distorts far less than wall time:

- ``decode_s``: ``decode_batch`` (Kafka values to checked events);
- ``columns_s``: the rows of every table, point tables joined into the arrays the sink inserts;
- ``insert_s``: ``ClickHouseSink.write`` into a fresh embedded store with every migration (views
  included), under a deduplication token as the runner sends it.

Figures are per million points. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from runstream_core.columns import to_columns
from runstream_core.events import MetricBatch, encode_event
from runstream_worker.decode import SourceRecord, decode_batch
from runstream_worker.migrate import migrate
from runstream_worker.settings import WorkerSettings
from runstream_worker.sink import ClickHouseSink

T0_MS = 1_700_000_000_000


def records(args: argparse.Namespace) -> list[SourceRecord]:
    """The Kafka records of ``args``' points, in the order a consumer of one partition sees them."""
    keys = [f"metric_{k}" for k in range(args.keys)]
    out: list[SourceRecord] = []
    per_record = args.steps_per_record
    for first in range(0, args.steps, per_record):
        for run in range(args.runs):
            steps = range(first, min(first + per_record, args.steps))
            batch = MetricBatch(
                producer_id=f"p{run}",
                seq=first // per_record,
                run_id=f"run-{run}",
                team=f"team_{run % 3}",
                project="bench",
                keys=keys * len(steps),
                steps=[s for s in steps for _ in keys],
                ts_ms=[T0_MS + s * 100 for s in steps for _ in keys],
                values=[s * 0.5 + k for s in steps for k in range(len(keys))],
            )
            events = [batch] if args.wire == 1 else to_columns(batch)
            for event in events:
                out.append(SourceRecord("bench.metrics", 0, len(out), encode_event(event)))
    return out


def join_columns(rows: Any) -> None:
    """The point tables as the sink inserts them (arrays joined once)."""
    for table in (rows.metrics, rows.hardware):
        if hasattr(table, "arrays"):
            table.arrays()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--steps-per-record", type=int, default=100)
    parser.add_argument("--take", type=int, default=200, help="records per take (RUNSTREAM_WORKER_BATCH_RECORDS)")
    parser.add_argument("--wire", type=int, choices=(1, 2), default=2)
    parser.add_argument("--quick", action="store_true", help="a tenth of the points")
    args = parser.parse_args()
    if args.quick:
        args.runs = 10
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, engine threads too
    console = Console(stderr=True)
    made = records(args)
    points = args.runs * args.keys * args.steps
    spent = {"decode_s": 0.0, "columns_s": 0.0, "insert_s": 0.0}
    with tempfile.TemporaryDirectory(prefix="runstream-worker-cost-") as tmp:
        settings = WorkerSettings(clickhouse_url=f"chdb://{Path(tmp) / 'clickhouse'}")
        migrate(settings)
        sink = ClickHouseSink(settings)
        try:
            sink.partition_limit()
            with console.status(f"{points:,} points in takes of {args.take} records"):
                for start in range(0, len(made), args.take):
                    take = made[start : start + args.take]
                    t0 = time.process_time()
                    decoded = decode_batch(take, "bench.")
                    t1 = time.process_time()
                    rows = decoded.rows
                    join_columns(rows)
                    t2 = time.process_time()
                    sink.write(rows, f"bench-{start}@1")
                    t3 = time.process_time()
                    spent["decode_s"] += t1 - t0
                    spent["columns_s"] += t2 - t1
                    spent["insert_s"] += t3 - t2
        finally:
            sink.close()
    per_million = {name: round(seconds * 1_000_000 / points, 3) for name, seconds in spent.items()}
    total = sum(per_million.values())
    figures = {
        "bench": "worker_cost",
        "wire": args.wire,
        "points": points,
        **per_million,
        "total_s": round(total, 3),
        "one_core_points_per_s": round(1_000_000 / total),
    }
    console.print(
        f"per 1M points on one core: decode {per_million['decode_s']}s, columns {per_million['columns_s']}s, "
        f"insert {per_million['insert_s']}s -> {figures['one_core_points_per_s']:,} points/s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
