"""The endpoint's configuration, read from settings and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runstream_core.credentials import endpoint_password, is_loopback
from runstream_core.endpoint_users import users_path
from runstream_worker.endpoint.request_settings import Limits
from runstream_worker.settings import WorkerSettings


def _names(text: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class EndpointConfig:
    """Everything the endpoint needs; ``password`` is the only secret and is never logged."""

    path: str
    host: str
    port: int
    writable: bool
    user: str
    password: str
    password_file: Path | None
    limits: Limits
    max_query_size: int
    max_body_bytes: int
    max_decompressed_bytes: int
    headers_timeout: float
    receive_timeout: float
    send_timeout: float
    max_connections: int
    max_concurrent_queries: int
    allowed_hosts: frozenset[str]
    allowed_origins: frozenset[str]
    store_database: str = "runstream"
    """runstream's database in the store: what team users read, and their only database."""
    users_file: Path | None = None
    """Team users (``runstream teams sync`` writes it); None: the endpoint's own user only."""
    default_database: str = "default"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @classmethod
    def from_settings(
        cls, settings: WorkerSettings, *, path: str, host: str, port: int, writable: bool
    ) -> EndpointConfig:
        """Raises ``UsageError`` for a non-loopback ``host`` without ``RUNSTREAM_HTTP_PASSWORD``."""
        password, password_file = endpoint_password(settings, host)
        return cls(
            path=path,
            host=host,
            port=port,
            writable=writable,
            user=settings.http_user,
            password=password,
            password_file=password_file,
            limits=Limits(
                max_execution_time=settings.http_max_execution_time,
                max_memory_usage=settings.http_max_memory_usage,
                max_result_bytes=settings.http_max_result_bytes,
                max_result_rows=settings.http_max_result_rows,
            ),
            max_query_size=settings.http_max_query_size,
            max_body_bytes=settings.http_max_body_bytes,
            max_decompressed_bytes=settings.http_max_decompressed_bytes,
            headers_timeout=settings.http_headers_timeout,
            receive_timeout=settings.http_receive_timeout,
            send_timeout=settings.http_send_timeout,
            max_connections=settings.http_max_connections,
            max_concurrent_queries=settings.http_max_concurrent_queries,
            allowed_hosts=_names(settings.http_allowed_hosts),
            allowed_origins=_names(settings.http_allowed_origins),
            store_database=settings.clickhouse_database,
            users_file=users_path(settings),
        )
