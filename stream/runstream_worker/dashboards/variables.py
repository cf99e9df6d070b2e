"""Dashboard variables shared by the dashboards, and the SQL filters that read them.

Every include-all variable has the custom all value ``'__all__'``: "All" then costs one constant
comparison instead of an IN list of every team, project or run. ``in_variable`` writes the filter
that accepts both.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models.dashboard import (
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from runstream_worker.dashboards.clickhouse_query import DATASOURCE, DATASOURCE_UID, PLUGIN_ID
from runstream_worker.dashboards.macros import ALL, ALL_VALUE_SQL

# A run belongs to a time range when it ran during some part of it.
RUNS_IN_RANGE = "started_at <= $__toTime AND (ended_at IS NULL OR ended_at >= $__fromTime)"


def in_variable(column: str, variable: str) -> str:
    """``column`` is one of the variable's selected values, or the variable is set to All."""
    values = f"${{{variable}:singlequote}}"
    return f"({column} IN ({values}) OR {ALL_VALUE_SQL} IN ({values}))"


def team_and_project(prefix: str = "") -> str:
    """The team and project filters, on columns of the table aliased ``prefix`` if given."""
    qualify = f"{prefix}." if prefix else ""
    return f"{in_variable(qualify + 'team', 'team')} AND {in_variable(qualify + 'project', 'project')}"


def _option(value: str, text: str | None = None) -> VariableOption:
    return VariableOption(selected=True, text=text if text is not None else value, value=value)


def datasource_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type(PLUGIN_ID)
        .current(_option(DATASOURCE_UID, "runstream ClickHouse"))
    )


def query_variable(
    name: str,
    label: str,
    sql: str,
    *,
    multi: bool = False,
    default: str = ALL,
    refresh: VariableRefresh = VariableRefresh.ON_TIME_RANGE_CHANGED,
    sort: VariableSort = VariableSort.DISABLED,
) -> dash.QueryVariable:
    """A variable fed by ``sql``: one column (value), or two (value, then the text shown).

    Multi-value variables offer All, selected by default; single-value ones start on ``default``.
    """
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(sql)
        .refresh(refresh)
        .sort(sort)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        return variable.all_value(ALL_VALUE_SQL).current(_option(ALL, "All"))
    return variable.current(_option(default))


def team_variable() -> dash.QueryVariable:
    return query_variable(
        "team",
        "Team",
        "SELECT DISTINCT team FROM runs ORDER BY team",
        multi=True,
        refresh=VariableRefresh.ON_DASHBOARD_LOAD,
    )


def project_variable() -> dash.QueryVariable:
    return query_variable(
        "project",
        "Project",
        f"SELECT DISTINCT project FROM runs WHERE {in_variable('team', 'team')} ORDER BY project",
        multi=True,
        refresh=VariableRefresh.ON_DASHBOARD_LOAD,
    )


def run_variable() -> dash.QueryVariable:
    """Runs active in the time range, newest first; the value is the run id, the text its name."""
    return query_variable(
        "run",
        "Runs",
        f"SELECT run_id, name FROM run_table WHERE {team_and_project()} AND {RUNS_IN_RANGE}"
        " ORDER BY started_at DESC, run_id",
        multi=True,
    )


def metric_variable(default: str = "loss") -> dash.QueryVariable:
    return query_variable(
        "metric",
        "Metric",
        f"SELECT DISTINCT key FROM metric_summary WHERE {team_and_project()} ORDER BY key",
        default=default,
    )


def best_variable() -> dash.CustomVariable:
    """Whether the lowest (a loss) or the highest (an accuracy) value of the metric is best."""
    return (
        dash.CustomVariable("best")
        .label("Best is")
        .values("lowest : min, highest : max")
        .current(_option("min", "lowest"))
        .options([_option("min", "lowest"), VariableOption(selected=False, text="highest", value="max")])
    )
