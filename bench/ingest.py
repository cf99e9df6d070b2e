"""End-to-end ingest rate of the pipeline: SDK -> Kafka -> worker -> rows in embedded ClickHouse.

Simulated jobs log metrics as fast as they can; the clock stops when the worker has committed
every record (so every row is in ClickHouse), and the stored row count is checked afterwards.
Needs a running broker (`make kafka-up`; RUNSTREAM_KAFKA_BOOTSTRAP to use another).
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

from rich.console import Console

import runstream
from runstream.settings import Settings
from runstream_worker.clickhouse import connect
from runstream_worker.lag import wait_caught_up
from runstream_worker.process import WorkerProcess


def job(index: int, steps: int, keys: int, settings: Settings) -> None:
    names = [f"metric_{k}" for k in range(keys)]
    with runstream.init(project="bench", team=f"team-{index % 3}", name=f"job-{index}", settings=settings) as run:
        for step in range(steps):
            run.log({name: step * 0.5 + k for k, name in enumerate(names)}, step=step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small run for a smoke check")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.steps = 2, 2_000

    console = Console(stderr=True)
    unique = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="runstream-bench-"))
    settings = Settings().model_copy(
        update={
            "clickhouse_url": f"chdb://{workdir / 'clickhouse'}",
            "topic_prefix": f"bench-{unique}.",
            "worker_group": f"bench-{unique}",
            "worker_batch_records": 200,
            "worker_commit_interval_s": 0.5,
            "runs_dir": workdir / "runs",
        }
    )
    expected = args.jobs * args.steps * args.keys
    console.print(f"ingest: {args.jobs} jobs x {args.steps:,} steps x {args.keys} keys = {expected:,} points")
    worker = WorkerProcess(settings, workdir / "worker.log").start().wait_ready()
    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=job, args=(i, args.steps, args.keys, settings)) for i in range(args.jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        logged = time.perf_counter()
        wait_caught_up(settings, timeout_s=900, poll_s=0.2)
        done = time.perf_counter()
    finally:
        worker.stop()
    client = connect(settings)
    try:
        stored = client.query("SELECT count() FROM metrics").result_rows[0][0]
    finally:
        client.close()
    if stored != expected:
        raise SystemExit(f"stored {stored:,} points, expected {expected:,}; see {worker.log_path}")
    seconds = done - started
    figures = {
        "bench": "ingest",
        "points": expected,
        "seconds": round(seconds, 3),
        "points_per_s": round(expected / seconds),
        "sdk_log_seconds": round(logged - started, 3),
    }
    console.print(
        f"{expected:,} points in {seconds:.2f}s: {figures['points_per_s']:,} points/s end to end "
        f"(jobs finished logging after {figures['sdk_log_seconds']}s)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
