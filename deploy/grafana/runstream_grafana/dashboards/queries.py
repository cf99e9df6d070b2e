"""Every SQL query of every dashboard (panel targets and query variables), raw or ready to run."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, VariableModel, VariableType

from runstream_grafana.dashboards.catalog import DASHBOARDS
from runstream_grafana.dashboards.clickhouse_query import ClickHouseQuery


@dataclass(frozen=True)
class DashboardQuery:
    """One query as stored in a dashboard, with macros and variables not yet expanded."""

    dashboard_uid: str
    title: str  # the panel's title, "variable <name>" or "annotation <name>"
    sql: str
    query_type: str  # "table", "timeseries", "variable" or "annotation"


def variables_of(model: Dashboard) -> list[VariableModel]:
    return model.templating.list_val if model.templating and model.templating.list_val else []


def starting_values(model: Dashboard) -> dict[str, str | list[str]]:
    """The value each variable starts with when the dashboard opens (All for multi-value ones)."""
    return {v.name: v.current.value for v in variables_of(model) if v.current is not None}


def queries_of(model: Dashboard) -> list[DashboardQuery]:
    uid = model.uid or ""
    found = [
        DashboardQuery(uid, f"variable {v.name}", str(v.query), "variable")
        for v in variables_of(model)
        if v.type_val == VariableType.QUERY
    ]
    for annotation in model.annotations.list_val or [] if model.annotations else []:
        if isinstance(annotation.target, ClickHouseQuery):
            found.append(DashboardQuery(uid, f"annotation {annotation.name}", annotation.target.raw_sql, "annotation"))
    for panel in model.panels or []:
        if not isinstance(panel, Panel):
            continue
        for target in panel.targets or []:
            if not isinstance(target, ClickHouseQuery):
                raise TypeError(f"{uid}: panel {panel.title!r} has a target that is not a ClickHouse query")
            found.append(DashboardQuery(uid, panel.title or "", target.raw_sql, target.query_type))
    return found


def dashboard_queries() -> list[DashboardQuery]:
    """All queries of all dashboards, in dashboard order: variables first, then annotations, then
    panels in layout order."""
    return [query for spec in DASHBOARDS for query in queries_of(spec.build())]
