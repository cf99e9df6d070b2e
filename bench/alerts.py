"""Alert latency: from ``log()`` of a NaN in a training job to the webhook receiving the alert.

A worker (default settings but for the topics and a fresh embedded ClickHouse) runs a team's rule
"``loss`` is NaN" with ``wait_duration_s: 0`` and a generic JSON webhook served by this script on a
loopback port. A probe job logs a finite ``loss`` every ``--step-s``; every ``--every`` steps it
logs a NaN instead (each NaN is an episode of its own: the next step recovers). Meanwhile
``--load-jobs`` jobs log ``--load-rate`` points per second in all (the worker under normal load).
Per NaN: the time from its ``log()`` call to the webhook's receipt of the alert for that step, both
on this machine's clock. Printed: p50, p99 and max, and the last line is one JSON object with the
figures. Needs a running broker (`make kafka-up`; RUNSTREAM_KAFKA_BOOTSTRAP for another).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console

from runstream.run import Run
from runstream.settings import Settings
from runstream_cli import alerts as cli_alerts
from runstream_cli.worker_process import WorkerProcess
from runstream_core import alert_rules as ar
from runstream_worker.settings import WorkerSettings

TEAM = "bench"
HOOK_SECRET = "HOOK"


class BenchSettings(Settings, WorkerSettings):
    """The SDK's and the worker's fields in one object: the jobs read the first, the worker the second."""


class Receiver:
    """The webhook: records when each alert arrived, by step."""

    def __init__(self) -> None:
        self.arrived_ms: dict[int, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                at = time.time() * 1000
                if body.get("event") == "fired":
                    receiver.arrived_ms.setdefault(int(body["step"]), at)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


def load_job(index: int, seconds: float, rate: float, settings_json: str) -> int:
    """Background load: ``rate`` points/s over 10 metrics for ``seconds``."""
    settings = Settings.model_validate_json(settings_json)
    run = Run(project="load", team=TEAM, name=f"load-{index}", settings=settings)
    names = [f"metric_{k}" for k in range(10)]
    started, step = time.monotonic(), 0
    while (now := time.monotonic()) < started + seconds:
        due = int((now - started) * rate / 10) + 1
        while step < due:
            run.log({name: step * 0.5 + k for k, name in enumerate(names)}, step=step)
            step += 1
        time.sleep(0.002)
    run.finish(timeout=120)
    return step * 10


def probe(settings: BenchSettings, nans: int, every: int, step_s: float) -> dict[int, float]:
    """Log ``loss``, a NaN every ``every`` steps; returns the log() time (ms) of each NaN by step."""
    run = Run(project="probe", team=TEAM, name="probe", settings=settings)
    logged: dict[int, float] = {}
    step = 0
    while len(logged) < nans:
        if step % every == every - 1:
            logged[step] = time.time() * 1000
            run.log({"loss": float("nan")}, step=step)
        else:
            run.log({"loss": 1.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(step_s)
    run.finish(timeout=60)
    return logged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nans", type=int, default=100, help="NaNs the probe logs (alerts measured)")
    parser.add_argument("--every", type=int, default=5, help="steps between NaNs")
    parser.add_argument("--step-s", type=float, default=0.1, help="seconds between the probe's steps")
    parser.add_argument("--load-jobs", type=int, default=4)
    parser.add_argument("--load-rate", type=float, default=100_000, help="background points per second, all jobs")
    parser.add_argument("--quick", action="store_true", help="a run of well under a minute")
    args = parser.parse_args()
    if args.quick:
        args.nans, args.load_jobs, args.load_rate = 10, 1, 10_000

    console = Console(stderr=True)
    receiver = Receiver()
    os.environ[ar.secret_env(TEAM, HOOK_SECRET)] = receiver.url  # the worker inherits it
    unique = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="runstream-bench-alerts-") as tmp:
        workdir = Path(tmp)
        settings = BenchSettings().model_copy(
            update={
                "clickhouse_url": f"chdb://{workdir / 'clickhouse'}",
                "topic_prefix": f"bench-{unique}.",
                "worker_group": f"bench-{unique}",
                "runs_dir": workdir / "runs",
                "hardware_interval_s": 0,
                "worker_http_port": 0,
            }
        )
        rules = ar.validate(
            {
                "team": TEAM,
                "webhooks": [{"name": "hook", "url_secret": HOOK_SECRET}],
                "rules": [{"name": "nan", "kind": "nan", "metric": "loss", "wait_duration_s": 0, "notify": ["hook"]}],
            }
        )
        cli_alerts.apply(rules, settings)
        worker = WorkerProcess(settings, workdir / "worker.log").start().wait_ready()
        try:
            seconds = args.nans * args.every * args.step_s + 5
            console.print(
                f"alerts: {args.nans} NaNs, a worker under {args.load_rate:,.0f} points/s from {args.load_jobs} jobs"
            )
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(max(1, args.load_jobs)) as pool:
                load = pool.starmap_async(
                    load_job,
                    [
                        (i, seconds, args.load_rate / max(1, args.load_jobs), settings.model_dump_json())
                        for i in range(args.load_jobs)
                    ],
                )
                logged = probe(settings, args.nans, args.every, args.step_s)
                deadline = time.monotonic() + 60
                while len(receiver.arrived_ms.keys() & logged.keys()) < len(logged) and time.monotonic() < deadline:
                    time.sleep(0.1)
                load_points = sum(load.get(timeout=600))
        finally:
            worker.stop()
        receiver.server.shutdown()
    missing = sorted(logged.keys() - receiver.arrived_ms.keys())
    if missing:
        raise SystemExit(f"no alert arrived for the NaNs at steps {missing}; see the worker's log")
    latencies = sorted((receiver.arrived_ms[step] - at) / 1000 for step, at in logged.items())
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    figures = {
        "bench": "alerts",
        "alerts": len(latencies),
        "load_points_per_s": round(load_points / seconds),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(quantiles[98], 3),
        "latency_max_s": round(latencies[-1], 3),
        "target_p99_s": 2.0,
    }
    console.print(
        f"log() of a NaN to the webhook: p50 {figures['latency_p50_s']}s, p99 {figures['latency_p99_s']}s, "
        f"max {figures['latency_max_s']}s over {len(latencies)} alerts"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
