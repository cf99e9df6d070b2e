"""The worker's settings: Kafka, the ClickHouse target, and the worker's and its HTTP endpoint's own."""

from __future__ import annotations

from pydantic import Field

from runstream_core.settings import ClickHouseSettings, KafkaSettings, LoggingSettings


class WorkerSettings(KafkaSettings, ClickHouseSettings, LoggingSettings):
    """runstream worker configuration. Every field is read from the env var named in its description."""

    topic_partitions: int = Field(default=4, ge=1)
    """Partitions of topics the worker declares (RUNSTREAM_TOPIC_PARTITIONS)."""

    clickhouse_raw_ttl_days: int = Field(default=0, ge=0)
    """Days raw metric and hardware rows are kept, applied by ``runstream migrate``; 0 keeps them
    forever. Rollups (run summaries, curve buckets, GPU-hours) are kept either way
    (RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS)."""

    worker_group: str = "runstream-worker"
    """Kafka consumer group (and Faust app id) of the worker (RUNSTREAM_WORKER_GROUP)."""

    worker_batch_records: int = Field(default=500, ge=1)
    """Records per worker insert batch, whichever comes first with the interval
    (RUNSTREAM_WORKER_BATCH_RECORDS)."""

    worker_flush_interval_s: float = Field(default=1.0, gt=0)
    """Longest time the worker holds a partial batch (RUNSTREAM_WORKER_FLUSH_INTERVAL_S)."""

    worker_takes_at_once: int = Field(default=1, ge=1, le=8)
    """Takes of each point topic (metrics, hardware) the worker has in hand at once: with 2, one is
    decoded while another is stored, on a second core (the engine releases the GIL); lifecycle
    records are always one take at a time. No faster for wire format v2, whose decoding is a few per
    cent of the work (docs/architecture.md) (RUNSTREAM_WORKER_TAKES_AT_ONCE)."""

    worker_commit_interval_s: float = Field(default=1.0, gt=0)
    """How often the worker commits offsets of inserted records (RUNSTREAM_WORKER_COMMIT_INTERVAL_S)."""

    worker_insert_tries: int = Field(default=3, ge=1)
    """Times ClickHouse may refuse a record for what it holds (a data error, by its error code)
    before the record goes to the dead-letter topic; the rest of its batch is stored. Transient
    failures (ClickHouse away, timeouts, memory) are retried without limit
    (RUNSTREAM_WORKER_INSERT_TRIES)."""

    worker_repair_window_s: float = Field(default=300.0, ge=0)
    """A record found stored by an insert this recent is inserted again under that insert's token,
    which completes rollups a worker killed mid-insert left short; keep it well within the time
    ClickHouse's deduplication window (10,000 inserts per table) covers; 0 turns it off
    (RUNSTREAM_WORKER_REPAIR_WINDOW_S)."""

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

    worker_alert_interval_s: float = Field(default=1.0, gt=0)
    """How often the worker evaluates the alert rules that depend on time passing (``stalled``,
    ``no_heartbeat``) (RUNSTREAM_WORKER_ALERT_INTERVAL_S)."""

    worker_alert_webhook_tries: int = Field(default=3, ge=1, le=20)
    """Times a webhook is tried for one alert (timeouts, refused connections, HTTP 429 and 5xx)
    before the alert goes to the dead-letter topic (RUNSTREAM_WORKER_ALERT_WEBHOOK_TRIES)."""

    worker_alert_webhook_timeout_s: float = Field(default=5.0, gt=0, le=120)
    """Longest wait for one webhook call (RUNSTREAM_WORKER_ALERT_WEBHOOK_TIMEOUT_S)."""

    worker_alert_resend_s: float = Field(default=86_400.0, ge=0)
    """When runs are assigned to the worker, their alerts stored this recently whose webhooks were
    not reached yet (a worker stopped in between) are sent; 0 sends none again
    (RUNSTREAM_WORKER_ALERT_RESEND_S)."""

    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    """Port of the worker's probe: Prometheus ``/metrics`` (signed in as ``RUNSTREAM_HTTP_USER``),
    ``/ready`` and ``/live``; 0 turns it off (RUNSTREAM_WORKER_METRICS_PORT)."""

    worker_metrics_host: str = "127.0.0.1"
    """Address the worker's probe listens on; local only by default, any other address needs
    ``RUNSTREAM_HTTP_PASSWORD`` (RUNSTREAM_WORKER_METRICS_HOST)."""

    worker_http_readonly: bool = True
    """Whether that interface serves single read statements only (SELECT, SHOW, DESCRIBE, EXISTS,
    EXPLAIN); ``false`` also allows INSERT and DDL (RUNSTREAM_WORKER_HTTP_READONLY)."""

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
