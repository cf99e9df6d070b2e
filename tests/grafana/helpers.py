"""Runs one dashboard query, found by dashboard uid and panel title, against a ClickHouse client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from clickhouse_connect.driver.client import Client

from runstream_grafana.dashboards import DASHBOARDS, dashboard_queries
from tests.grafana.emulator import QueryContext, expand, variable_values

QUERIES = {(q.dashboard_uid, q.title): q for q in dashboard_queries()}
MODELS = {spec.uid: spec.build() for spec in DASHBOARDS}


def run(
    client: Client,
    uid: str,
    title: str,
    context: QueryContext,
    **values: str | Sequence[str],
) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """Column names and rows (as dicts) of the query, with ``values`` over the dashboard's defaults.

    Values are option values as Grafana stores them (``option_value(text)``).
    """
    merged = variable_values(MODELS[uid], {**context.values, **values})
    result = client.query(expand(QUERIES[(uid, title)].sql, replace(context, values=merged)))
    columns = tuple(result.column_names)
    return columns, [dict(zip(columns, row, strict=True)) for row in result.result_rows]
