"""The one ClickHouse client factory: the target picks the engine, clickhouse-connect does the rest.

Everything goes through clickhouse-connect, so there is one code path for the embedded engine and a
server. clickhouse-connect comes with the ``stream`` and ``notebook`` extras, and is imported only
when a client is made: training jobs never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runstream_core.credentials import client_credentials
from runstream_core.settings import ClickHouseSettings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def connect(settings: ClickHouseSettings, *, with_database: bool = True, **kwargs: Any) -> Client:
    """A client for ``settings.target``; ``with_database`` selects runstream's database."""
    import clickhouse_connect

    database = settings.clickhouse_database if with_database else None
    if settings.target.embedded:
        return clickhouse_connect.get_client(dsn=settings.target.url, database=database, **kwargs)
    username, password = client_credentials(settings)
    return clickhouse_connect.get_client(
        dsn=settings.target.url, database=database or "default", username=username, password=password, **kwargs
    )
