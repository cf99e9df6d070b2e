"""Settings shared by the components: Kafka, the ClickHouse target, logging.

Each component has its own settings class made of the groups it uses plus its own fields: the SDK's
``runstream.Settings``, the worker's ``WorkerSettings``, Grafana tooling's ``GrafanaSettings``.
Every field is read from ``RUNSTREAM_<FIELD>`` (environment, then a ``.env`` file in the working
directory) and validated once, when the settings are built; explicit keyword arguments win.
Secrets are ``SecretStr``: masked in ``as_dict()`` and in every log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream_core.clickhouse_target import ClickHouseTarget
from runstream_core.cluster import check_cluster_name
from runstream_core.topics import Topics


def _default_clickhouse_url() -> str:
    return "chdb://" + str(Path.home() / ".runstream" / "clickhouse")


def _default_state_dir() -> Path:
    return Path.home() / ".runstream"


class SettingsBase(BaseSettings):
    """``RUNSTREAM_*`` environment variables, then ``.env``, then the defaults; frozen once built."""

    model_config = SettingsConfigDict(
        env_prefix="RUNSTREAM_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

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


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(SettingsBase):
    """How every Kafka client of runstream reaches the cluster (``runstream_core.kafka`` builds them)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated (RUNSTREAM_KAFKA_BOOTSTRAP)."""

    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (RUNSTREAM_KAFKA_SECURITY_PROTOCOL)."""

    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    """SASL mechanism with a ``SASL_*`` protocol: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``
    (RUNSTREAM_KAFKA_SASL_MECHANISM)."""

    kafka_sasl_username: str = ""
    """SASL user (RUNSTREAM_KAFKA_SASL_USERNAME)."""

    kafka_sasl_password: SecretStr = SecretStr("")
    """SASL password (RUNSTREAM_KAFKA_SASL_PASSWORD); never logged."""

    kafka_ssl_cafile: Path | None = None
    """CA certificate (PEM) to verify the brokers with, for ``SSL`` / ``SASL_SSL``; unset: the
    system's (RUNSTREAM_KAFKA_SSL_CAFILE)."""

    kafka_ssl_certfile: Path | None = None
    """Client certificate (PEM) for mutual TLS (RUNSTREAM_KAFKA_SSL_CERTFILE)."""

    kafka_ssl_keyfile: Path | None = None
    """Client private key (PEM) for mutual TLS (RUNSTREAM_KAFKA_SSL_KEYFILE)."""

    topic_prefix: str = Field(default="runstream.", pattern=r"^[A-Za-z0-9._\-]*$")
    """Prefix of every topic name, so pipelines can share a cluster (RUNSTREAM_TOPIC_PREFIX)."""

    @property
    def bootstrap_servers(self) -> list[str]:
        """``kafka_bootstrap`` as the list Kafka clients take."""
        return [server.strip() for server in self.kafka_bootstrap.split(",") if server.strip()]

    @property
    def topics(self) -> Topics:
        """The pipeline's topic names under ``topic_prefix``."""
        return Topics(self.topic_prefix)


class ClickHouseSettings(SettingsBase):
    """Where runstream's data lives, and how a client signs in to it."""

    clickhouse_url: str = Field(default_factory=_default_clickhouse_url)
    """ClickHouse DSN: ``chdb:///abs/path`` for the embedded engine (default ~/.runstream/clickhouse)
    or ``http(s)://host:8123`` for a server (RUNSTREAM_CLICKHOUSE_URL)."""

    clickhouse_database: str = Field(default="runstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Database holding runstream's tables (RUNSTREAM_CLICKHOUSE_DATABASE)."""

    clickhouse_cluster: str = ""
    """Name of the ClickHouse cluster (in the servers' ``<remote_servers>``) runstream's tables are spread
    over; empty: one server. Set, migrations create replicated local tables on every shard under
    Distributed tables of the usual names, team access statements run ``ON CLUSTER``, and inserts wait
    for the shards (RUNSTREAM_CLICKHOUSE_CLUSTER; ``runstream migrate --cluster``, docs/scaling.md)."""

    clickhouse_user: str = "default"
    """ClickHouse user for server DSNs (RUNSTREAM_CLICKHOUSE_USER)."""

    clickhouse_password: SecretStr = SecretStr("")
    """ClickHouse password for server DSNs (RUNSTREAM_CLICKHOUSE_PASSWORD); never logged."""

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

    worker_http_host: str = "127.0.0.1"
    """Address the worker's ClickHouse HTTP endpoint listens on, and where others reach the
    embedded store; local only by default (RUNSTREAM_WORKER_HTTP_HOST)."""

    worker_http_port: int = Field(default=8123, ge=0, le=65535)
    """With the embedded engine (``chdb://``), the worker owns the database path and serves
    ClickHouse's HTTP interface for it on this port, so Grafana, notebooks and SQL clients can
    query while it ingests; 0 turns it off. Ignored for server DSNs (RUNSTREAM_WORKER_HTTP_PORT)."""

    @field_validator("clickhouse_url")
    @classmethod
    def _parsable(cls, value: str) -> str:
        ClickHouseTarget.parse(value)  # raises ValueError, which names the field
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        return check_cluster_name(value) if value else value  # UsageError is a ValueError

    @property
    def target(self) -> ClickHouseTarget:
        """``clickhouse_url`` parsed (once per URL): the embedded store's path, or a server's URL."""
        return ClickHouseTarget.parse(self.clickhouse_url)


class LoggingSettings(SettingsBase):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the CLI and the worker (RUNSTREAM_LOG_LEVEL)."""

    log_format: Literal["console", "json"] = "console"
    """Log lines as ``key=value`` text or JSON (RUNSTREAM_LOG_FORMAT)."""
