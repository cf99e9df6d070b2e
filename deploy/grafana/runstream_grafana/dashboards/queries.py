"""Every SQL query of every dashboard (panel targets and query variables), raw or ready to run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, VariableModel, VariableType

from runstream_core.errors import UsageError
from runstream_grafana.dashboards.catalog import DASHBOARDS
from runstream_grafana.dashboards.clickhouse_query import ClickHouseQuery
from runstream_grafana.dashboards.macros import ALL, QueryContext, expand


@dataclass(frozen=True)
class DashboardQuery:
    """One query as stored in a dashboard, with macros and variables not yet expanded."""

    dashboard_uid: str
    title: str  # the panel's title, or "variable <name>"
    sql: str
    query_type: str  # "table", "timeseries", or "variable"


def _variables(model: Dashboard) -> list[VariableModel]:
    return model.templating.list_val if model.templating and model.templating.list_val else []


def starting_values(model: Dashboard) -> dict[str, str | list[str]]:
    """The value each variable starts with when the dashboard opens (All for multi-value ones)."""
    return {v.name: v.current.value for v in _variables(model) if v.current is not None}


def variable_values(model: Dashboard, values: Mapping[str, str | Sequence[str]]) -> dict[str, str | list[str]]:
    """The values Grafana interpolates in ``model``'s queries: ``values`` over the starting ones.

    Values are option values as Grafana stores them (``option_value(text)``). Grafana keeps the
    value of a multi-value variable as a list, so a single string given for one becomes a list of one.
    """
    multi = {v.name for v in _variables(model) if v.multi}
    merged: dict[str, str | list[str]] = {}
    for name, value in {**starting_values(model), **values}.items():
        if isinstance(value, str):
            merged[name] = [value] if name in multi and value != ALL else value
        else:
            merged[name] = list(value)
    return merged


def _queries(model: Dashboard) -> list[DashboardQuery]:
    uid = model.uid or ""
    found = [
        DashboardQuery(uid, f"variable {v.name}", str(v.query), "variable")
        for v in _variables(model)
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

    ``variables`` sets dashboard variables by name to option values as Grafana stores them,
    ``option_value(text)`` (``{"team": option_value("vision"), "run": ["r1", "r2"]}``); the others
    keep the value they start with (All, or e.g. the metric ``loss``).
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
            values=variable_values(model, variables),
        )
        expanded += [(q.dashboard_uid, q.title, expand(q.sql, context)) for q in _queries(model)]
    return expanded
