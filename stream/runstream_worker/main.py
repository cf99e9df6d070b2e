"""Running the worker process: serve the probe, check the schema and the topics, start Faust,
close the sink on the way out."""

from __future__ import annotations

from faust import Worker

from runstream_core.errors import RunstreamError
from runstream_core.log import get_logger
from runstream_worker.alerts.rulebook import RuleBook, RulesFeed
from runstream_worker.app import create_app, dead_letter_max_bytes, dead_letter_sender, wire
from runstream_worker.endpoint.config import EndpointConfig
from runstream_worker.endpoint.server import EndpointServer, serve_summary
from runstream_worker.migrate import migrate, pending
from runstream_worker.probe import Probe, Readiness
from runstream_worker.runner import Runner
from runstream_worker.settings import WorkerSettings
from runstream_worker.sink import ClickHouseSink
from runstream_worker.stats import WorkerStats
from runstream_worker.topics import ensure_topics

log = get_logger("runstream.worker")


def check_schema(settings: WorkerSettings, apply: bool) -> None:
    """Apply (``apply``) or require up-to-date migrations before consuming anything."""
    if apply:
        migrate(settings)
    elif pending(settings):
        raise RunstreamError(
            "ClickHouse schema is not up to date: run `runstream migrate` (or start with `runstream worker --migrate`)"
        )


def serve_embedded(settings: WorkerSettings) -> EndpointServer | None:
    """With the embedded engine, serve it over HTTP: this process owns the path, so Grafana,
    notebooks and SQL clients can only reach the data through it while the worker runs.

    A non-loopback address without a password stops the worker (``UsageError``); a taken port
    does not: ingestion matters more, and the error is logged."""
    if not settings.worker_http_port or settings.target.path is None:
        return None
    config = EndpointConfig.from_settings(
        settings,
        path=settings.target.path,
        host=settings.worker_http_host,
        port=settings.worker_http_port,
        writable=not settings.worker_http_readonly,
    )
    try:
        server = EndpointServer(config).start()
    except OSError as exc:
        log.error("could not serve the clickhouse http interface", port=settings.worker_http_port, error=str(exc))
        return None
    log.info(serve_summary(server))
    return server


def run_worker(settings: WorkerSettings, *, apply_migrations: bool = False) -> None:
    """Consume until SIGTERM/SIGINT, then flush buffered batches, commit and exit."""
    stats, readiness = WorkerStats(), Readiness()
    probe = Probe.from_settings(settings, stats.registry(), readiness).start() if settings.worker_metrics_port else None
    try:
        check_schema(settings, apply_migrations)
        ensure_topics(settings)
        readiness.topics_exist()
        app = create_app(settings)
        rules = RulesFeed(settings, settings.topics.alert_rules, RuleBook()).start()
        if not rules.wait_caught_up(30.0):
            log.warning("alert rules not read yet; rules will apply as they arrive")
        runner = Runner(
            settings,
            ClickHouseSink(settings),
            dead_letter_sender(app, settings),
            stats,
            dead_letter_max_bytes=dead_letter_max_bytes(app),
            rules=rules.book,
        )
        wire(app, runner, settings, readiness)
        http = serve_embedded(settings)
        try:
            log.info(
                "worker starting",
                **{
                    k: v
                    for k, v in settings.as_dict().items()
                    if k.startswith(("kafka", "clickhouse", "topic", "worker"))
                },
            )
            Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False).execute_from_commandline()
        finally:
            if http is not None:
                http.stop()
            rules.stop()
            runner.close()
            totals = stats.totals()
            log.info("worker stopped", records=totals.records, points=totals.points, rejected=totals.rejected)
    finally:
        if probe is not None:
            probe.stop()
