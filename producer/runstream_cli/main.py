"""``runstream`` command line. Subcommands import their heavy dependencies only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runstream_core.errors import MissingExtraError, RunstreamError
from runstream_core.log import configure
from runstream_core.settings import LoggingSettings


def _cmd_migrate(args: argparse.Namespace) -> int:
    from runstream_core.cluster import check_cluster_name
    from runstream_worker.migrate import migrate, plan
    from runstream_worker.settings import WorkerSettings

    settings = WorkerSettings()
    if args.cluster is not None:
        settings = settings.model_copy(update={"clickhouse_cluster": check_cluster_name(args.cluster)})
    if args.dry_run:
        print(plan(settings).script(settings.clickhouse_raw_ttl_days), end="")
        return 0
    applied = migrate(settings)
    print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from runstream_worker.main import run_worker
    from runstream_worker.settings import WorkerSettings

    run_worker(WorkerSettings(), apply_migrations=args.migrate)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from runstream.settings import Settings
    from runstream_cli.demo import run_demo
    from runstream_worker.settings import WorkerSettings

    return run_demo(Settings(), WorkerSettings(), steps=args.steps)


def _cmd_lag(args: argparse.Namespace) -> int:
    from runstream_worker.lag import consumer_lag
    from runstream_worker.settings import WorkerSettings

    for tp, lag in sorted(consumer_lag(WorkerSettings()).items()):
        print(f"{tp.topic}[{tp.partition}] {lag}")
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from runstream_core import json_schema

    if args.check:
        stale = json_schema.stale()
        for path in stale:
            print(f"{path} is out of date: run `runstream schemas`", file=sys.stderr)
        if stale:
            return 1
        print("JSON Schema export is up to date")
        return 0
    for path in json_schema.write():
        print(path)
    return 0


def _cmd_dashboards(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from runstream_grafana import dashboards
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "grafana_foundation_sdk":
            raise MissingExtraError("grafana", exc.name) from exc
        raise

    out_dir = Path(args.out)
    if args.check:
        stale = dashboards.differences(out_dir)
        for path in stale:
            print(f"{out_dir / path} differs from the generator: run `runstream dashboards`", file=sys.stderr)
        if not stale:
            print(f"dashboards in {out_dir} are up to date")
        return 1 if stale else 0
    changed = dashboards.write(out_dir)
    print(
        f"wrote {len(changed)} dashboard file(s) in {out_dir}" if changed else f"dashboards in {out_dir} are up to date"
    )
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from runstream._sync import count_records, find_spools, is_synced, sync
    from runstream.settings import Settings

    settings = Settings()
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
        + (f"; {report.split_records} too large for one Kafka record, sent in parts" if report.split_records else "")
        + (f"; {report.oversized_records} too large for Kafka, skipped" if report.oversized_records else "")
    )
    for failed in report.failed:
        print(f"not acknowledged by Kafka, run sync again: {failed}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runstream._history import ImportReport
    from runstream_cli.importers.run import run_import

    report = ImportReport()
    total: int | None = None
    if args.source == "mlflow":
        from runstream_cli.importers.from_mlflow import read_mlflow

        runs = read_mlflow(args.tracking_uri, args.experiment or [], report, project=args.project)
    elif args.source == "tensorboard":
        from runstream_cli.importers.from_tensorboard import read_tensorboard, run_dirs

        total = len(run_dirs(Path(args.dir)))
        runs = read_tensorboard(Path(args.dir), report, project=args.project)
    elif args.source == "neptune":
        from runstream_cli.importers.from_neptune import part_files, read_neptune

        total = len(part_files(Path(args.dir)))
        runs = read_neptune(Path(args.dir), report, step_multiplier=args.step_multiplier, project=args.project)
    else:
        from runstream_cli.importers.from_wandb import read_wandb, run_files

        total = len(run_files(Path(args.dir)))
        runs = read_wandb(Path(args.dir), report, project=args.project)
    return run_import(args.source, runs, total_runs=total, team=args.team, report=report)


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal

    from runstream_core.errors import UsageError
    from runstream_worker.endpoint.config import EndpointConfig
    from runstream_worker.endpoint.server import EndpointServer, serve_summary
    from runstream_worker.settings import WorkerSettings

    settings = WorkerSettings()
    if settings.target.path is None:
        raise UsageError(f"runstream serve serves an embedded store (chdb:///path), not {settings.clickhouse_url}")
    config = EndpointConfig.from_settings(
        settings, path=settings.target.path, host=args.host, port=args.port, writable=args.writable
    )
    server = EndpointServer(config)
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    server.serve_forever(on_ready=lambda: print(serve_summary(server), flush=True))
    server.stop()
    return 0


def _cmd_teams_sync(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from runstream_grafana.teams.sync import run_cli
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"grafana_client", "yaml", "niquests"}:
            raise MissingExtraError("grafana", exc.name) from exc
        raise
    from runstream_grafana.settings import GrafanaSettings

    secrets = Path(args.secrets) if args.secrets else None
    return run_cli(
        GrafanaSettings(),
        Path(args.teams_yaml),
        secrets_file=secrets,
        dry_run=args.dry_run,
        dashboards=Path(args.dashboards),
    )


def _cmd_alerts(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runstream_cli import alerts

    ruleset = alerts.load(Path(args.rules_file))
    summary = f"team {ruleset.team}: {len(ruleset.rules)} rule(s), {len(ruleset.webhooks)} webhook(s)"
    if args.alerts_command == "check":
        print(f"{args.rules_file} is valid ({summary})")
        return 0
    from runstream_worker.settings import WorkerSettings

    applied = alerts.apply(ruleset, WorkerSettings())
    print(f"applied {args.rules_file} ({summary}), version {applied.version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runstream", description="runstream experiment and hardware tracking")
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="apply ClickHouse migrations (idempotent)")
    migrate.add_argument(
        "--cluster",
        metavar="NAME",
        help="apply the cluster form on the servers' cluster NAME: ON CLUSTER, replicated local tables, "
        "Distributed tables of the usual names (default: RUNSTREAM_CLICKHOUSE_CLUSTER; docs/scaling.md)",
    )
    migrate.add_argument(
        "--dry-run",
        action="store_true",
        help="print every statement, in order, without connecting to ClickHouse or changing anything",
    )
    migrate.set_defaults(func=_cmd_migrate)
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
    _import_parser(sub)
    serve = sub.add_parser(
        "serve",
        help="serve the embedded ClickHouse (chdb:// DSN) over ClickHouse's HTTP interface, read-only by default",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8123, help="port to listen on (default 8123; 0 picks one)")
    serve.add_argument(
        "--writable", action="store_true", help="also allow INSERT and DDL (for workers writing through it)"
    )
    serve.set_defaults(func=_cmd_serve)
    teams = sub.add_parser("teams", help="per-team isolation in ClickHouse and Grafana")
    teams_sub = teams.add_subparsers(dest="teams_command", required=True)
    teams_sync = teams_sub.add_parser(
        "sync", help="create or update each team's ClickHouse user, row policies and Grafana organization"
    )
    teams_sync.add_argument("teams_yaml", metavar="TEAMS_YAML", help="the teams file (see deploy/teams.example.yaml)")
    teams_sync.add_argument("--secrets", metavar="FILE", help="YAML or .env file with the teams' ClickHouse passwords")
    teams_sync.add_argument("--dry-run", action="store_true", help="print the plan (and SQL) without changing anything")
    teams_sync.add_argument(
        "--dashboards", metavar="DIR", default="deploy/grafana/dashboards", help="folder with team/ and admin/ JSON"
    )
    teams_sync.set_defaults(func=_cmd_teams_sync)
    alerts = sub.add_parser("alerts", help="alert rules as code, per team (see deploy/alerts.example.yaml)")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    for name, about in (
        ("check", "validate a rules file; nothing is changed"),
        ("apply", "validate a rules file and put it in force for its team (the workers pick it up live)"),
    ):
        command = alerts_sub.add_parser(name, help=about)
        command.add_argument("rules_file", metavar="FILE", help="the team's rules file (YAML)")
        command.set_defaults(func=_cmd_alerts)
    sub.add_parser("lag", help="print the worker's consumer lag per partition").set_defaults(func=_cmd_lag)
    schemas = sub.add_parser("schemas", help="write the JSON Schema export of the event schemas")
    schemas.add_argument("--check", action="store_true", help="fail if the committed export is stale")
    schemas.set_defaults(func=_cmd_schemas)
    boards = sub.add_parser("dashboards", help="write the Grafana dashboards generated from code")
    boards.add_argument("--check", action="store_true", help="fail, listing the files, if any differs from the code")
    boards.add_argument("--out", default="deploy/grafana/dashboards", help="output directory (default: %(default)s)")
    boards.set_defaults(func=_cmd_dashboards)
    return parser


def _import_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imports = sub.add_parser(
        "import",
        help="bring runs recorded by MLflow, TensorBoard, Neptune or W&B into runstream (idempotent)",
        description="Runs keep their original times; importing again sends nothing new (the 'importers' extra).",
    )
    sources = imports.add_subparsers(dest="source", required=True)

    def source(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sources.add_parser(name, help=help_text)
        parser.add_argument("--team", required=True, help="the team the runs belong to")
        parser.add_argument("--project", help="the project of every run (default: the source's own)")
        parser.set_defaults(func=_cmd_import)
        return parser

    mlflow = source("mlflow", "MLflow runs: a file store, a database or a tracking server")
    mlflow.add_argument("--tracking-uri", required=True, help="./mlruns, sqlite:///mlflow.db, http://host:5000...")
    mlflow.add_argument(
        "--experiment", action="append", help="an experiment's name; repeat for several (default: all active ones)"
    )
    tensorboard = source("tensorboard", "TensorBoard event files: each directory holding some is a run")
    tensorboard.add_argument("dir", help="the log directory (project: its name, unless --project)")
    neptune = source("neptune", "Neptune runs exported by neptune-exporter (its Parquet files)")
    neptune.add_argument("dir", help="neptune-exporter's data path (default ./exports/data there)")
    neptune.add_argument(
        "--step-multiplier",
        type=int,
        default=1,
        help="multiplies Neptune's decimal steps into whole ones, e.g. 1000 for steps in thousandths "
        "(default: 1; use the same value for every import)",
    )
    wandb = source("wandb", "W&B runs from the directories its SDK writes (e.g. wandb/offline-run-*)")
    wandb.add_argument("dir", help="a wandb directory, a run directory or a .wandb file")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging = LoggingSettings()
    configure(logging.log_level, logging.log_format)
    try:
        code = args.func(args)
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
