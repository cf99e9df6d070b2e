"""One clickhouse-connect client per ClickHouse target, shared by every read in the process.

With the embedded engine (``chdb:///path``) only one process may open a path: while a worker runs,
read through the ClickHouse HTTP endpoint it serves (``http://127.0.0.1:8123``, or ``runstream
serve``); open the ``chdb://`` path directly only when nothing else has it open.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from runstream.query._deps import require
from runstream_core.credentials import client_credentials
from runstream_core.errors import CommError
from runstream_core.log import get_logger
from runstream_core.settings import ClickHouseSettings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

log = get_logger(__name__)

_Target = tuple[str, str, str, str]

_clients: dict[_Target, Client] = {}
_lock = threading.Lock()

EMBEDDED_BUSY_HINT = (
    "the embedded store {path} is open in another process (a running worker?); only one process may "
    "open it. Read through the worker's ClickHouse HTTP endpoint instead: "
    "Settings(clickhouse_url='http://127.0.0.1:8123') or RUNSTREAM_CLICKHOUSE_URL=http://127.0.0.1:8123"
)


def _target(settings: ClickHouseSettings) -> _Target:
    return (settings.clickhouse_url, settings.clickhouse_database, *client_credentials(settings))


def open_client(settings: ClickHouseSettings) -> Client:
    """A new client for ``settings``, with errors that say what to do."""
    require("clickhouse_connect")  # names the notebook extra when it is missing
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from runstream_core.clickhouse import connect

    try:
        return connect(settings)
    except ClickHouseError as exc:
        url = settings.clickhouse_url
        if settings.target.embedded and "Unable to open the chdb engine" in str(exc):
            raise CommError(EMBEDDED_BUSY_HINT.format(path=settings.target.path)) from exc
        raise CommError(f"cannot query ClickHouse at {url} (database {settings.clickhouse_database}): {exc}") from exc


def shared_client(settings: ClickHouseSettings | None = None) -> Client:
    """The process's client for ``settings`` (default: ``Settings()`` from ``RUNSTREAM_*``), opened once."""
    settings = settings if settings is not None else ClickHouseSettings()
    target = _target(settings)
    with _lock:
        client = _clients.get(target)
        if client is None:
            client = open_client(settings)
            _clients[target] = client
            log.debug("clickhouse client opened", url=settings.clickhouse_url)
        return client


def close_all() -> None:
    """Close every shared client (an embedded path is released for other processes)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
