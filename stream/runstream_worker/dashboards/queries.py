"""Every SQL query of every dashboard (panel targets and query variables), raw or ready to run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, VariableType

from runstream.errors import UsageError
from runstream_worker.dashboards.catalog import DASHBOARDS
from runstream_worker.dashboards.clickhouse_query import ClickHouseQuery
from runstream_worker.dashboards.macros import QueryContext, expand


@dataclass(frozen=True)
class DashboardQuery:
    """One query as stored in a dashboard, with macros and variables not yet expanded."""

    dashboard_uid: str
    title: str  # the panel's title, or "variable <name>"
    sql: str
    query_type: str  # "table", "timeseries", or "variable"


def starting_values(model: Dashboard) -> dict[str, str | list[str]]:
    """The value each variable starts with when the dashboard opens (All for multi-value ones)."""
    variables = model.templating.list_val if model.templating and model.templating.list_val else []
    return {v.name: v.current.value for v in variables if v.current is not None}


def _queries(model: Dashboard) -> list[DashboardQuery]:
    uid = model.uid or ""
    variables = model.templating.list_val if model.templating and model.templating.list_val else []
    found = [
        DashboardQuery(uid, f"variable {v.name}", str(v.query), "variable")
        for v in variables
        if v.type_val == VariableType.QUERY
    ]
    for panel in model.panels or []:
        if not isinstance(panel, Panel):
            continue
        for target in panel.targets or []:
            if not isinstance(target, ClickHouseQuery):
                raise TypeError(f"{uid}: panel {panel.title!r} has a target that is not a ClickHouse query")
            found.append(DashboardQuery(uid, panel.title or "", target.raw_sql, target.query_type))
    return found


def dashboard_queries() -> list[DashboardQuery]:
    """All queries of all dashboards, in dashboard order: variables first, then panels in layout order."""
    return [query for spec in DASHBOARDS for query in _queries(spec.build())]


def all_queries(
    variables: Mapping[str, str | Sequence[str]],
    *,
    time_from_ms: int,
    time_to_ms: int,
    interval_s: int = 60,
) -> list[tuple[str, str, str]]:
    """``(dashboard_uid, panel_title, sql)`` for every query, expanded as Grafana would run it.

    ``variables`` sets dashboard variables by name (``{"team": "vision", "run": ["r1", "r2"]}``);
    the others keep the value they start with (All, or e.g. the metric ``loss``).
    """
    models = [spec.build() for spec in DASHBOARDS]
    declared = {name for model in models for name in starting_values(model)}
    unknown = sorted(set(variables) - declared)
    if unknown:
        raise UsageError(f"no dashboard has the variable(s) {unknown}; known: {sorted(declared)}")
    expanded = []
    for model in models:
        context = QueryContext(
            time_from_ms=time_from_ms,
            time_to_ms=time_to_ms,
            interval_s=interval_s,
            values={**starting_values(model), **variables},
        )
        expanded += [(q.dashboard_uid, q.title, expand(q.sql, context)) for q in _queries(model)]
    return expanded
