"""The worker's own cost per million points on one core: decoding, building columns, inserting.

No broker and no SDK: records are made here (``--runs`` x ``--keys`` x ``--steps`` points, one record
per run and ``--steps-per-record`` steps, wire format ``--wire`` 2 or 1), then handed to the worker's
steps in takes of ``--take`` records, pinned to one core and timed in process CPU time (every thread
of the process, the engine's included), which a busy machine distorts far less than wall time:

- ``decode_s``: ``decode_batch`` (Kafka values to checked events);
- ``columns_s``: the rows of every table, point tables joined into the arrays the sink inserts;
- ``insert_s``: ``ClickHouseSink.write`` into a fresh embedded store with every migration (views
  included), under a deduplication token as the runner sends it.

Figures are per million points. ``--two-cores`` then stores the same points again, in a fresh
store, with both cores and in wall time, two ways: one worker process holding ``--takes-at-once``
takes (decoding one while the engine stores another: ``thread_points_per_s``), and two worker
processes writing through ``runstream serve --writable`` (chDB is one engine per process, so that is
how processes share it: ``processes_points_per_s``). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from runstream_core.clickhouse import connect
from runstream_core.columns import to_columns
from runstream_core.events import MetricBatch, encode_event
from runstream_worker.dead_letters import Letter
from runstream_worker.decode import SourceRecord, decode_batch
from runstream_worker.migrate import migrate
from runstream_worker.runner import Runner
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


def count_points(settings: WorkerSettings) -> int:
    client = connect(settings)
    try:
        return int(client.query("SELECT count() FROM metrics").result_rows[0][0])
    finally:
        client.close()


def takes_of(made: list[SourceRecord], size: int) -> list[list[SourceRecord]]:
    return [made[start : start + size] for start in range(0, len(made), size)]


async def _no_letters(letter: Letter) -> None:
    raise AssertionError(f"no record of this benchmark is a dead letter: {letter.headers}")


def threaded(made: list[SourceRecord], args: argparse.Namespace, store: Path) -> float:
    """Seconds (wall) one worker process takes to store ``made``, with ``args.takes_at_once`` takes in hand."""
    settings = WorkerSettings(clickhouse_url=f"chdb://{store}", topic_prefix="bench.")
    migrate(settings)
    sink = ClickHouseSink(settings)
    sink.partition_limit()
    runner = Runner(settings, sink, _no_letters)

    async def run() -> None:
        queue: asyncio.Queue[list[SourceRecord]] = asyncio.Queue()
        for take in takes_of(made, args.take):
            queue.put_nowait(take)

        async def consumer() -> None:
            while not queue.empty():
                await runner.handle(queue.get_nowait())

        await asyncio.gather(*(consumer() for _ in range(args.takes_at_once)))

    started = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - started
    runner.close()
    return seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_worker(index: int, count: int, args: argparse.Namespace, url: str, password: str, ready: Any) -> None:
    """One worker process: its share of the takes, decoded and written through the endpoint."""
    settings = WorkerSettings(clickhouse_url=url, http_password=password, topic_prefix="bench.")
    sink = ClickHouseSink(settings)
    sink.partition_limit()
    mine = takes_of(records(args), args.take)[index::count]
    ready.wait()
    for n, take in enumerate(mine):
        sink.write(decode_batch(take, "bench.").rows, f"p{index}-{n}@1")
    sink.close()


def processes(args: argparse.Namespace, store: Path, count: int = 2) -> float:
    """Seconds (wall) ``count`` worker processes take to store the points through ``runstream serve``."""
    password = secrets.token_urlsafe(16)
    port = _free_port()
    env = {**os.environ, "RUNSTREAM_CLICKHOUSE_URL": f"chdb://{store}", "RUNSTREAM_HTTP_PASSWORD": password}
    cli = [sys.executable, "-m", "runstream_cli.main"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--writable"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # the summary, once it listens
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Barrier(count + 1)
        url = f"http://127.0.0.1:{port}"
        workers = [
            ctx.Process(target=_process_worker, args=(i, count, args, url, password, ready)) for i in range(count)
        ]
        for worker in workers:
            worker.start()
        ready.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        if any(worker.exitcode for worker in workers):
            raise SystemExit("a worker process failed")
        return time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--steps-per-record", type=int, default=100)
    parser.add_argument("--take", type=int, default=200, help="records per take (RUNSTREAM_WORKER_BATCH_RECORDS)")
    parser.add_argument("--wire", type=int, choices=(1, 2), default=2)
    parser.add_argument("--quick", action="store_true", help="a tenth of the points")
    parser.add_argument("--two-cores", action="store_true", help="also store them with both cores, two ways")
    parser.add_argument("--takes-at-once", type=int, default=2, help="takes one worker process holds at once")
    parser.add_argument("--no-processes", action="store_true", help="with --two-cores: the one-process way only")
    args = parser.parse_args()
    if args.quick:
        args.runs = 10
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if cores:
        os.sched_setaffinity(0, {min(cores)})  # one core, engine threads too
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
            join_columns(decode_batch(made[:1], "bench.").rows)  # one-time imports, outside the figures
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
            stored = count_points(settings)
            if stored != points:
                raise SystemExit(f"stored {stored:,} points of {points:,}")
        finally:
            sink.close()
    two_cores: dict[str, Any] = {}
    if args.two_cores:
        if cores:
            os.sched_setaffinity(0, cores)
        with tempfile.TemporaryDirectory(prefix="runstream-worker-cost-") as tmp:
            with console.status(f"one worker process, {args.takes_at_once} takes at once"):
                seconds = threaded(made, args, Path(tmp) / "threaded")
            two_cores["thread_points_per_s"] = round(points / seconds)
            if not args.no_processes:
                with console.status("two worker processes through runstream serve"):
                    seconds = processes(args, Path(tmp) / "processes")
                two_cores["processes_points_per_s"] = round(points / seconds)
        console.print(f"both cores: {two_cores}")
    per_million = {name: round(seconds * 1_000_000 / points, 3) for name, seconds in spent.items()}
    total = sum(per_million.values())
    figures = {
        "bench": "worker_cost",
        "wire": args.wire,
        "points": points,
        **per_million,
        "total_s": round(total, 3),
        "one_core_points_per_s": round(1_000_000 / total),
        **two_cores,
    }
    console.print(
        f"per 1M points on one core: decode {per_million['decode_s']}s, columns {per_million['columns_s']}s, "
        f"insert {per_million['insert_s']}s -> {figures['one_core_points_per_s']:,} points/s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
