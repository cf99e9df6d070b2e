"""``runstream`` command line. Subcommands import their heavy dependencies only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runstream._log import configure
from runstream.errors import MissingExtraError, RunstreamError
from runstream.settings import Settings


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from runstream_worker.migrate import migrate

    applied = migrate(settings)
    print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
    return 0


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from runstream_worker.main import run_worker

    run_worker(settings, apply_migrations=args.migrate)
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from runstream.cli.demo import run_demo

    return run_demo(settings, steps=args.steps)


def _cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    from runstream_worker.lag import consumer_lag

    for tp, lag in sorted(consumer_lag(settings).items()):
        print(f"{tp.topic}[{tp.partition}] {lag}")
    return 0


def _cmd_schemas(settings: Settings, args: argparse.Namespace) -> int:
    from runstream_schemas import json_schema

    if args.check:
        current = json_schema.export_path().read_text() if json_schema.export_path().exists() else ""
        if current != json_schema.render():
            print(f"{json_schema.export_path()} is out of date: run `runstream schemas`", file=sys.stderr)
            return 1
        print("JSON Schema export is up to date")
        return 0
    print(json_schema.write())
    return 0


def _cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from runstream._sync import count_records, find_spools, is_synced, sync

    spools = find_spools(Path(p) for p in (args.paths or [settings.runs_dir]))
    if not spools:
        print("nothing to sync: no spool found")
        return 0
    todo = [s for s in spools if args.force or not is_synced(s)]
    columns = (TextColumn("sync"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("records", total=count_records(todo))
        report = sync(spools, settings, force=args.force, progress=lambda n: bar.advance(task, n))
    print(
        f"sent {report.sent_records} record(s) from {report.producers} spool(s); "
        f"{report.skipped} already synced"
        + (f"; {report.corrupt_segments} torn segment tail(s)" if report.corrupt_segments else "")
    )
    for failed in report.failed:
        print(f"not acknowledged by Kafka, run sync again: {failed}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    from runstream_worker.chdb_http import ChdbHttpServer
    from runstream_worker.clickhouse import embedded_path

    server = ChdbHttpServer(
        embedded_path(settings.clickhouse_url), host=args.host, port=args.port, readonly=args.readonly
    )
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    server.serve_forever(
        on_ready=lambda: print(f"serving {settings.clickhouse_url} on http://{args.host}:{server.port}", flush=True)
    )
    server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runstream", description="runstream experiment and hardware tracking")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply ClickHouse migrations (idempotent)").set_defaults(func=_cmd_migrate)
    worker = sub.add_parser("worker", help="run the stream worker (Kafka -> ClickHouse) until SIGTERM")
    worker.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    worker.set_defaults(func=_cmd_worker)
    demo = sub.add_parser("demo", help="simulate two teams' training jobs end to end and compare the runs")
    demo.add_argument("--steps", type=int, default=400, help="steps per simulated run")
    demo.set_defaults(func=_cmd_demo)
    sync = sub.add_parser("sync", help="send spooled runs (offline or left by a crash) to Kafka; idempotent")
    sync.add_argument("paths", nargs="*", help="run or spool directories (default: RUNSTREAM_RUNS_DIR)")
    sync.add_argument("--force", action="store_true", help="send spools already marked synced again")
    sync.set_defaults(func=_cmd_sync)
    serve = sub.add_parser("serve", help="serve the embedded ClickHouse (chdb:// DSN) over ClickHouse's HTTP interface")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8123, help="port to listen on (default 8123; 0 picks one)")
    serve.add_argument("--readonly", action="store_true", help="refuse writes and DDL (readonly = 2)")
    serve.set_defaults(func=_cmd_serve)
    sub.add_parser("lag", help="print the worker's consumer lag per partition").set_defaults(func=_cmd_lag)
    schemas = sub.add_parser("schemas", help="write the JSON Schema export of the event schemas")
    schemas.add_argument("--check", action="store_true", help="fail if the committed export is stale")
    schemas.set_defaults(func=_cmd_schemas)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    try:
        code = args.func(settings, args)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"faust", "clickhouse_connect", "aiokafka", "chdb"}:
            print(f"runstream: {MissingExtraError('stream', exc.name)}", file=sys.stderr)
            sys.exit(2)
        raise
    except RunstreamError as exc:
        print(f"runstream: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
