"""``Reader``: the read API bound to one clickhouse-connect client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runstream.query._compare import Comparison, read_comparison
from runstream.query._connection import open_client
from runstream.query._curves import read_curves
from runstream.query._deps import pandas
from runstream.query._hardware import read_hardware
from runstream.query._runs import read_runs
from runstream.settings import Settings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from pandas import DataFrame


class Reader:
    """Reads runstream's tables into pandas DataFrames through ``client``, a clickhouse-connect
    client whose database is runstream's (as ``Reader.connect`` opens it). The module-level
    functions of :mod:`runstream.query` use one shared Reader per ClickHouse target instead."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def connect(cls, settings: Settings | None = None) -> Reader:
        """A Reader with a client of its own for ``settings`` (default: ``Settings()``); close it after."""
        return cls(open_client(settings if settings is not None else Settings()))

    def runs(
        self,
        team: str | None = None,
        project: str | None = None,
        where: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        ascending: bool = True,
        limit: int | None = None,
    ) -> DataFrame:
        """See :func:`runstream.query.runs`."""
        return read_runs(
            self.client,
            team,
            project,
            params=params,
            where=where,
            parameters=parameters,
            order_by=order_by,
            ascending=ascending,
            limit=limit,
        )

    def curves(self, run_ids: str | Iterable[str], key: str, points: int = 1000) -> DataFrame:
        """See :func:`runstream.query.curves`."""
        return read_curves(self.client, run_ids, key, points)

    def hardware(self, run_id: str, keys: str | Iterable[str] | None = None) -> DataFrame:
        """See :func:`runstream.query.hardware`."""
        return read_hardware(self.client, run_id, keys)

    def compare(self, run_ids: str | Iterable[str], key: str, points: int = 1000) -> Comparison:
        """See :func:`runstream.query.compare`."""
        return read_comparison(self.client, run_ids, key, points)

    def sql(self, query: str, parameters: Mapping[str, Any] | None = None) -> DataFrame:
        """See :func:`runstream.query.sql`."""
        pandas()
        return self.client.query_df(query, parameters=dict(parameters or {}))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
