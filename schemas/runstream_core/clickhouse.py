"""The one ClickHouse client factory: the target picks the engine, clickhouse-connect does the rest.

Everything goes through clickhouse-connect, so there is one code path for the embedded engine and a
server. clickhouse-connect comes with the ``stream`` and ``notebook`` extras, and is imported only
when a client is made: training jobs never load it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from runstream_core.credentials import client_credentials
from runstream_core.errors import UsageError
from runstream_core.settings import ClickHouseSettings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def check_cluster_target(settings: ClickHouseSettings) -> None:
    """:class:`UsageError` when a cluster is named for the embedded store, which is one node."""
    if settings.clickhouse_cluster and settings.target.embedded:
        raise UsageError(
            f"the cluster {settings.clickhouse_cluster} needs ClickHouse servers (http(s)://host:8123), not "
            f"the embedded store {settings.clickhouse_url}, which is one node: unset RUNSTREAM_CLICKHOUSE_CLUSTER "
            "(or leave out --cluster)"
        )


def connect(settings: ClickHouseSettings, *, with_database: bool = True, **kwargs: Any) -> Client:
    """A client for ``settings.target``; ``with_database`` selects runstream's database."""
    import clickhouse_connect

    database = settings.clickhouse_database if with_database else None
    check_cluster_target(settings)
    if settings.clickhouse_cluster:
        # An insert into a Distributed table returns once the shards stored it, not once it is queued on
        # this server: the worker commits Kafka offsets after an insert returns, and its replay check
        # and deduplication tokens need the rows on their shards.
        kwargs["settings"] = {"distributed_foreground_insert": 1, **kwargs.get("settings", {})}
    if settings.target.embedded:
        return clickhouse_connect.get_client(dsn=settings.target.url, database=database, **kwargs)
    username, password = client_credentials(settings)
    return clickhouse_connect.get_client(
        dsn=settings.target.url, database=database or "default", username=username, password=password, **kwargs
    )


def engine_connection(settings: ClickHouseSettings) -> Any:
    """A ``chdb.connect`` handle on the embedded engine of ``settings.target``, for what only the
    engine's own API does: inserting numpy columns through its ``Python()`` table function, with no
    value per row serialised. It is a session of its own on the one engine of the process (chDB
    allows any number of handles to one path, and runs their queries in parallel); its current
    database is runstream's. ``ValueError`` for a server target."""
    path = settings.target.path
    if path is None:
        raise ValueError(f"{settings.target.url!r} is a server: only the embedded engine has a handle")
    import chdb
    from clickhouse_connect.driver.binding import quote_identifier

    # The spelling clickhouse-connect gives the engine: chDB compares paths literally.
    handle = chdb.connect(os.path.realpath(path))
    handle.query(f"USE {quote_identifier(settings.clickhouse_database)}")
    return handle
