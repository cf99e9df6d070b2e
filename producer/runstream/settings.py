"""One settings object for SDK, worker and CLI, read from ``RUNSTREAM_*`` env vars or a ``.env`` file.

Explicit keyword arguments (``runstream.init(..., settings=Settings(kafka_bootstrap=...))``) win over
the environment, which wins over the file, which wins over the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_clickhouse_url() -> str:
    return "chdb://" + str(Path.home() / ".runstream" / "clickhouse")


def _default_runs_dir() -> Path:
    return Path.home() / ".runstream" / "runs"


def _default_state_dir() -> Path:
    return Path.home() / ".runstream"


Mode = Literal["online", "offline", "disabled"]


class Settings(BaseSettings):
    """runstream configuration. Every field is read from the env var named in its description."""

    model_config = SettingsConfigDict(
        env_prefix="RUNSTREAM_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated (RUNSTREAM_KAFKA_BOOTSTRAP)."""

    topic_prefix: str = Field(default="runstream.", pattern=r"^[A-Za-z0-9._\-]*$")
    """Prefix of every topic name, so pipelines can share a cluster (RUNSTREAM_TOPIC_PREFIX)."""

    topic_partitions: int = Field(default=4, ge=1)
    """Partitions of topics the worker declares (RUNSTREAM_TOPIC_PARTITIONS)."""

    clickhouse_url: str = Field(default_factory=_default_clickhouse_url)
    """ClickHouse DSN: ``chdb:///abs/path`` for the embedded engine (default ~/.runstream/clickhouse)
    or ``http://host:8123`` for a server (RUNSTREAM_CLICKHOUSE_URL)."""

    clickhouse_database: str = Field(default="runstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Database holding runstream's tables (RUNSTREAM_CLICKHOUSE_DATABASE)."""

    clickhouse_user: str = "default"
    """ClickHouse user for server DSNs (RUNSTREAM_CLICKHOUSE_USER)."""

    clickhouse_password: SecretStr = SecretStr("")
    """ClickHouse password for server DSNs (RUNSTREAM_CLICKHOUSE_PASSWORD); never logged."""

    clickhouse_raw_ttl_days: int = Field(default=0, ge=0)
    """Days raw metric and hardware rows are kept, applied by ``runstream migrate``; 0 keeps them
    forever. Rollups (run summaries, curve buckets, GPU-hours) are kept either way
    (RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS)."""

    flush_interval_s: float = Field(default=0.5, gt=0, le=60)
    """How often the SDK's background thread sends buffered points (RUNSTREAM_FLUSH_INTERVAL_S)."""

    max_points_per_record: int = Field(default=4096, ge=1, le=100_000)
    """Metric points packed into one Kafka record (RUNSTREAM_MAX_POINTS_PER_RECORD)."""

    max_buffered_points: int = Field(default=2_000_000, ge=1000)
    """Bound on points held in SDK memory; beyond it points are dropped and counted
    (RUNSTREAM_MAX_BUFFERED_POINTS)."""

    max_unsent_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    """Bytes of encoded records the SDK keeps in memory for Kafka (waiting or in flight); past it
    (Kafka down or slow) records wait only in the on-disk spool (RUNSTREAM_MAX_UNSENT_BYTES)."""

    mode: Mode = "online"
    """``online`` sends to Kafka; ``offline`` only writes the spool, for ``runstream sync`` later;
    ``disabled`` makes every call a no-op (RUNSTREAM_MODE). ``init(mode=...)`` overrides it."""

    runs_dir: Path = Field(default_factory=_default_runs_dir)
    """Where each run keeps its spool and state, in ``<runs_dir>/<run_id>/`` (RUNSTREAM_RUNS_DIR)."""

    spool_segment_bytes: int = Field(default=8 * 1024 * 1024, ge=4096)
    """Size at which the spool starts a new segment file (RUNSTREAM_SPOOL_SEGMENT_BYTES)."""

    run_id: str | None = None
    """Run id for ``init()`` when none is passed, e.g. shared by every rank of a job (RUNSTREAM_RUN_ID)."""

    hardware_interval_s: float = Field(default=10.0, ge=0, le=3600)
    """Seconds between hardware samples; 0 turns the sampler off, otherwise at least 0.5
    (RUNSTREAM_HARDWARE_INTERVAL_S)."""

    hardware_all_gpus: bool = False
    """Report every GPU of the node instead of those in CUDA_VISIBLE_DEVICES (RUNSTREAM_HARDWARE_ALL_GPUS)."""

    handle_sigterm: bool = True
    """On SIGTERM, mark the run killed and flush it, then pass the signal on (RUNSTREAM_HANDLE_SIGTERM)."""

    heartbeat_interval_s: float = Field(default=30.0, gt=0)
    """Interval of run heartbeats (RUNSTREAM_HEARTBEAT_INTERVAL_S)."""

    finish_timeout_s: float = Field(default=60.0, ge=0)
    """Longest wait in ``Run.finish()`` for buffered events to be delivered (RUNSTREAM_FINISH_TIMEOUT_S)."""

    worker_group: str = "runstream-worker"
    """Kafka consumer group (and Faust app id) of the worker (RUNSTREAM_WORKER_GROUP)."""

    worker_batch_records: int = Field(default=500, ge=1)
    """Records per worker insert batch, whichever comes first with the interval
    (RUNSTREAM_WORKER_BATCH_RECORDS)."""

    worker_flush_interval_s: float = Field(default=1.0, gt=0)
    """Longest time the worker holds a partial batch (RUNSTREAM_WORKER_FLUSH_INTERVAL_S)."""

    worker_commit_interval_s: float = Field(default=1.0, gt=0)
    """How often the worker commits offsets of inserted records (RUNSTREAM_WORKER_COMMIT_INTERVAL_S)."""

    worker_crash_after_s: float = Field(default=120.0, gt=0)
    """A run whose heartbeats stopped this long ago without an end is marked crashed
    (RUNSTREAM_WORKER_CRASH_AFTER_S); keep it a few heartbeat intervals."""

    worker_stall_after_s: float = Field(default=600.0, gt=0)
    """A run whose step has not moved this long while heartbeats arrive is flagged stalled
    (RUNSTREAM_WORKER_STALL_AFTER_S)."""

    worker_liveness_interval_s: float = Field(default=10.0, gt=0)
    """How often the worker looks for crashed runs (RUNSTREAM_WORKER_LIVENESS_INTERVAL_S)."""

    worker_health_interval_s: float = Field(default=10.0, gt=0)
    """How often the worker writes a ``pipeline_health`` row and updates its lag gauges
    (RUNSTREAM_WORKER_HEALTH_INTERVAL_S)."""

    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    """Port of the worker's Prometheus metrics endpoint; 0 turns it off (RUNSTREAM_WORKER_METRICS_PORT)."""

    worker_http_port: int = Field(default=8123, ge=0, le=65535)
    """With the embedded engine (``chdb://``), the worker owns the database path and serves
    ClickHouse's HTTP interface for it on this port, so Grafana, notebooks and SQL clients can
    query while it ingests; 0 turns it off. Ignored for server DSNs (RUNSTREAM_WORKER_HTTP_PORT)."""

    worker_http_host: str = "127.0.0.1"
    """Address the worker's ClickHouse HTTP interface listens on; local only by default
    (RUNSTREAM_WORKER_HTTP_HOST)."""

    worker_http_readonly: bool = True
    """Whether that interface serves single read statements only (SELECT, SHOW, DESCRIBE, EXISTS,
    EXPLAIN); ``false`` also allows INSERT and DDL (RUNSTREAM_WORKER_HTTP_READONLY)."""

    state_dir: Path = Field(default_factory=_default_state_dir)
    """runstream's own state, e.g. the generated password of the ClickHouse HTTP endpoint; kept
    0700 (RUNSTREAM_STATE_DIR)."""

    http_user: str = Field(default="runstream", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    """User of the embedded engine's ClickHouse HTTP endpoint (the worker's, or ``runstream serve``);
    its clients sign in with it as with ClickHouse: basic auth or ``X-ClickHouse-User`` /
    ``X-ClickHouse-Key`` (RUNSTREAM_HTTP_USER)."""

    http_password: SecretStr = SecretStr("")
    """Password of that user (RUNSTREAM_HTTP_PASSWORD). Unset on a loopback address: one is generated
    at the first start and kept 0600 in ``<state_dir>/http_password``, where local clients read it.
    Unset on any other address: the endpoint refuses to start."""

    http_max_execution_time: float = Field(default=60.0, gt=0)
    """Longest run of one query on the endpoint, seconds (ClickHouse ``max_execution_time``; a client
    may ask for less, never more) (RUNSTREAM_HTTP_MAX_EXECUTION_TIME)."""

    http_max_memory_usage: int = Field(default=4 * 1024**3, gt=0)
    """Memory one query on the endpoint may use, bytes (ClickHouse ``max_memory_usage``)
    (RUNSTREAM_HTTP_MAX_MEMORY_USAGE)."""

    http_max_result_bytes: int = Field(default=1024**3, gt=0)
    """Largest result of one query, bytes before compression (ClickHouse ``max_result_bytes``)
    (RUNSTREAM_HTTP_MAX_RESULT_BYTES)."""

    http_max_result_rows: int = Field(default=100_000_000, gt=0)
    """Most rows in the result of one query (ClickHouse ``max_result_rows``) (RUNSTREAM_HTTP_MAX_RESULT_ROWS)."""

    http_max_query_size: int = Field(default=256 * 1024, ge=1024)
    """Longest query text, bytes (ClickHouse ``max_query_size``) (RUNSTREAM_HTTP_MAX_QUERY_SIZE)."""

    http_max_body_bytes: int = Field(default=256 * 1024**2, ge=1024)
    """Largest request body as sent, bytes; INSERT data on a writable endpoint is the only large body
    (RUNSTREAM_HTTP_MAX_BODY_BYTES)."""

    http_max_decompressed_bytes: int = Field(default=1024**3, ge=1024)
    """Largest request body once decompressed, bytes (RUNSTREAM_HTTP_MAX_DECOMPRESSED_BYTES)."""

    http_headers_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send the request line and headers (RUNSTREAM_HTTP_HEADERS_TIMEOUT)."""

    http_receive_timeout: float = Field(default=30.0, gt=0)
    """Seconds one read of the request body may wait (ClickHouse ``http_receive_timeout``)
    (RUNSTREAM_HTTP_RECEIVE_TIMEOUT)."""

    http_send_timeout: float = Field(default=30.0, gt=0)
    """Seconds one write of the response may wait (ClickHouse ``http_send_timeout``)
    (RUNSTREAM_HTTP_SEND_TIMEOUT)."""

    http_max_connections: int = Field(default=64, ge=1)
    """Open connections the endpoint keeps at once; more are answered 503 and closed (ClickHouse
    ``max_connections``) (RUNSTREAM_HTTP_MAX_CONNECTIONS)."""

    http_max_concurrent_queries: int = Field(default=8, ge=1)
    """Queries the endpoint runs at once; more get ``Code: 202`` (ClickHouse ``max_concurrent_queries``)
    (RUNSTREAM_HTTP_MAX_CONCURRENT_QUERIES)."""

    http_allowed_hosts: str = ""
    """Comma-separated host names the endpoint answers to besides ``localhost`` and IP addresses, as
    sent in the ``Host`` header (a guard against DNS rebinding), e.g. ``worker.internal``
    (RUNSTREAM_HTTP_ALLOWED_HOSTS)."""

    http_allowed_origins: str = ""
    """Comma-separated web origins allowed to call the endpoint from a browser, e.g.
    ``https://grafana.example``; requests from any other origin are refused
    (RUNSTREAM_HTTP_ALLOWED_ORIGINS)."""

    grafana_url: str = "http://127.0.0.1:3000"
    """Grafana that ``runstream teams sync`` manages (RUNSTREAM_GRAFANA_URL)."""

    grafana_user: str = "admin"
    """Grafana server admin that ``runstream teams sync`` signs in as (RUNSTREAM_GRAFANA_USER)."""

    grafana_password: SecretStr = SecretStr("")
    """Password of that Grafana admin (RUNSTREAM_GRAFANA_PASSWORD); never logged."""

    grafana_clickhouse_url: str | None = None
    """ClickHouse URL as Grafana reaches it, for the team datasources ``runstream teams sync``
    writes, e.g. ``http://clickhouse:8123`` inside docker compose; unset: ``clickhouse_url``
    (RUNSTREAM_GRAFANA_CLICKHOUSE_URL)."""

    teams_secrets_file: Path | None = None
    """YAML or ``.env``-style file with the teams' ClickHouse passwords for ``runstream teams sync``
    (RUNSTREAM_TEAMS_SECRETS_FILE); the environment wins over it."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the CLI and the worker (RUNSTREAM_LOG_LEVEL)."""

    log_format: Literal["console", "json"] = "console"
    """Log lines as ``key=value`` text or JSON (RUNSTREAM_LOG_FORMAT)."""

    @field_validator("hardware_interval_s")
    @classmethod
    def _sampler_floor(cls, value: float) -> float:
        if 0 < value < 0.5:
            raise ValueError("hardware_interval_s must be 0 (off) or at least 0.5 seconds")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        """``kafka_bootstrap`` as the list Kafka clients take."""
        return [server.strip() for server in self.kafka_bootstrap.split(",") if server.strip()]

    def as_dict(self) -> dict[str, Any]:
        """Settings as plain values, secrets masked: safe to log or print."""
        values = self.model_dump()
        for name, value in values.items():
            if isinstance(value, SecretStr):
                values[name] = "**********" if value.get_secret_value() else ""
        return values

    def as_env(self) -> dict[str, str]:
        """These settings as ``RUNSTREAM_*`` env vars (secrets included), to hand to a child process."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env[f"RUNSTREAM_{name.upper()}"] = text
        return env
