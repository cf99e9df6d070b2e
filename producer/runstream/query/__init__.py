"""Read runs, curves and hardware into pandas DataFrames, for notebooks.

>>> from runstream import query
>>> table = query.runs(team="vision", params={"optimizer": "adamw"}, order_by="loss")
>>> query.compare(table["run_id"][:5], "loss").plot()

Needs the ``notebook`` extra (``pip install 'runstream[notebook]'``: pandas, matplotlib,
clickhouse-connect); ``import runstream`` never imports them. Every function takes ``settings``
(default: ``Settings()``, from ``RUNSTREAM_*`` env vars) and reuses one ClickHouse client per target;
:class:`Reader` binds the same functions to a client of your own.

Which DSN to read from: with the embedded engine only one process may open a ``chdb://`` path. While
a worker runs, read through the ClickHouse HTTP endpoint it serves (``runstream serve`` serves one
too): ``RUNSTREAM_CLICKHOUSE_URL=http://127.0.0.1:8123``. Open the ``chdb:///path`` directly only
when nothing else has it open, and call :func:`close` to let other processes open it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runstream.query._compare import Comparison
from runstream.query._connection import close_all, shared_client
from runstream.query._reader import Reader
from runstream_core.settings import ClickHouseSettings

if TYPE_CHECKING:
    from pandas import DataFrame

__all__ = ["Comparison", "Reader", "close", "compare", "curves", "hardware", "reader", "runs", "sql"]


def reader(settings: ClickHouseSettings | None = None) -> Reader:
    """The Reader on the shared client for ``settings`` (opened on first use)."""
    return Reader(shared_client(settings))


def close() -> None:
    """Close the shared clients, e.g. to release an embedded store for a worker."""
    close_all()


def runs(
    team: str | None = None,
    project: str | None = None,
    where: str | None = None,
    settings: ClickHouseSettings | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    order_by: str | None = None,
    ascending: bool = True,
    limit: int | None = None,
) -> DataFrame:
    """One row per run: ``run_id, team, project, name, group, user, status, stalled, started_at,
    ended_at`` (UTC), then ``param.<key>`` per param (text, as stored) and ``metric.<key>`` per
    metric (its value at the last step; NaN where a run lacks it).

    - ``team``, ``project``: keep only these.
    - ``params``: keep runs whose params have these values, e.g. ``{"optimizer": "adamw", "lr": 3e-4}``
      (values are compared as the SDK stores them: ``3e-4`` matches a run logged with ``0.0003``).
    - ``where``: an SQL condition on the ``run_table`` view's columns (``status``, ``user``,
      ``run_group``, ``started_at``, ``params['lr']``, ``last_values['loss']``, ...), with
      ``{name:Type}`` placeholders bound from ``parameters``.
    - ``order_by``: a metric key; runs are sorted by its last value (``ascending``), runs without it
      last. Default order: team, project, start time.
    - ``limit``: at most this many rows.
    """
    return reader(settings).runs(
        team,
        project,
        where,
        params=params,
        parameters=parameters,
        order_by=order_by,
        ascending=ascending,
        limit=limit,
    )


def curves(
    run_ids: str | Iterable[str], key: str, points: int = 1000, settings: ClickHouseSettings | None = None
) -> DataFrame:
    """The curve of metric ``key`` for each run: columns ``run_id, step, value, min, max``, rows in
    the order of ``run_ids`` then by step, at most ``points`` (>= 2) rows per run.

    Raw points when every curve has at most ``points`` of them (``min == max == value``); else one
    row per bucket of the finest ``metric_buckets`` level (16, 256, 4,096 or 65,536 steps) that fits:
    ``value`` is the mean of the bucket's points, ``min``/``max`` their range, ``step`` the bucket's
    middle step (capped at the last step logged). The dashboards use the same rule."""
    return reader(settings).curves(run_ids, key, points)


def hardware(
    run_id: str, keys: str | Iterable[str] | None = None, settings: ClickHouseSettings | None = None
) -> DataFrame:
    """A run's hardware readings per minute: columns ``minute`` (UTC), ``host, key, device`` (``""``
    for host-wide readings), ``mean, min, max``; ``keys`` (e.g. ``"gpu.utilization_percent"``) keeps
    only these, None all of them."""
    return reader(settings).hardware(run_id, keys)


def compare(
    run_ids: str | Iterable[str], key: str, points: int = 1000, settings: ClickHouseSettings | None = None
) -> Comparison:
    """The curves of ``key`` for ``run_ids`` (see :func:`curves`) with the runs' names:
    ``.frame`` holds them, ``.plot(ax=None)`` overlays them with matplotlib and returns the Axes."""
    return reader(settings).compare(run_ids, key, points)


def sql(
    query: str, parameters: Mapping[str, Any] | None = None, settings: ClickHouseSettings | None = None
) -> DataFrame:
    """Any SQL on runstream's database as a DataFrame, with ``{name:Type}`` placeholders bound from
    ``parameters`` (the queries of ``docs/sql.md`` run as they are)."""
    return reader(settings).sql(query, parameters)
