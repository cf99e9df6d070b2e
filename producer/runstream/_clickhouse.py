"""ClickHouse clients. The DSN picks the engine: ``chdb:///path`` embedded, ``http(s)://`` a server.

Everything goes through clickhouse-connect, so there is one code path for both engines. It lives in
the SDK package so that notebooks (``runstream.query``) reach ClickHouse without the worker's
dependencies; ``runstream_worker.clickhouse`` re-exports it. clickhouse-connect comes with the
``stream`` and ``notebook`` extras.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from runstream._endpoint_credentials import client_credentials
from runstream.errors import UsageError
from runstream.settings import Settings


def is_embedded(url: str) -> bool:
    return url.startswith("chdb:")


def embedded_path(url: str) -> str:
    """The database directory of a ``chdb:///path`` DSN."""
    if not is_embedded(url):
        raise UsageError(f"{url!r} is not an embedded (chdb://) DSN")
    path = url.removeprefix("chdb://")
    if not path.startswith("/"):
        raise UsageError(f"{url!r}: give an absolute path, chdb:///abs/path")
    return path


def connect(settings: Settings, *, with_database: bool = True, **kwargs: Any) -> Client:
    """A client for ``settings.clickhouse_url``; ``with_database`` selects runstream's database."""
    database = settings.clickhouse_database if with_database else None
    if is_embedded(settings.clickhouse_url):
        return clickhouse_connect.get_client(dsn=settings.clickhouse_url, database=database, **kwargs)
    username, password = client_credentials(settings)
    return clickhouse_connect.get_client(
        dsn=settings.clickhouse_url, database=database or "default", username=username, password=password, **kwargs
    )
