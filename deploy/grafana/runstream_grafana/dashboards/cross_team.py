"""Cross-team (platform admins): each team's usage (runs, points, GPU-hours) and best results."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common

from runstream_grafana.dashboards.panels import with_query
from runstream_grafana.dashboards.variables import (
    RUNS_IN_RANGE,
    best_variable,
    datasource_variable,
    metric_variable,
    project_variable,
    team_and_project,
    team_variable,
    variable_text,
)

UID = "runstream-cross-team"

_METRIC = variable_text("metric")
_BEST_IS_MAX = f"{variable_text('best')} = 'max'"


def _usage() -> table.Panel:
    return with_query(
        table.Panel(),
        "Usage by team",
        f"""
        WITH in_range AS (
            SELECT team, project, run_id, status FROM run_table WHERE {team_and_project()} AND {RUNS_IN_RANGE}
        )
        SELECT u.team AS team, u.runs AS runs, u.running AS running, p.points AS points, g.gpu_hours AS gpu_hours
        FROM (
            SELECT team, count() AS runs, countIf(status = 'running') AS running FROM in_range GROUP BY team
        ) AS u
        LEFT JOIN (
            SELECT team, sum(points) AS points
            FROM metric_summary
            WHERE {team_and_project()} AND (team, project, run_id) IN (SELECT team, project, run_id FROM in_range)
            GROUP BY team
        ) AS p ON p.team = u.team
        LEFT JOIN (
            SELECT team, sum(gpu_hours) AS gpu_hours
            FROM gpu_hours
            WHERE {team_and_project()} AND $__timeFilter(hour)
            GROUP BY team
        ) AS g ON g.team = u.team
        ORDER BY team
        """,
        description="Runs that ran during the time range, the metric points they logged, and GPU-hours held.",
        width=12,
    ).decimals(2)


def _gpu_hours_over_time() -> timeseries.Panel:
    return with_query(
        timeseries.Panel().draw_style(common.GraphDrawStyle.BARS),
        "GPU-hours by team",
        f"""
        SELECT toStartOfInterval(hour, INTERVAL greatest($__interval_s, 3600) second) AS time, team,
               sum(gpu_hours) AS gpu_hours
        FROM gpu_hours
        WHERE {team_and_project()} AND $__timeFilter(hour)
        GROUP BY time, team
        ORDER BY time, team
        """,
        description="GPU-hours per team per interval (at least an hour: the rollup's resolution).",
        time_series=True,
        width=12,
    ).unit("short")


def _best_results() -> table.Panel:
    return with_query(
        table.Panel(),
        "Best ${metric:text} per team and project",
        f"""
        SELECT team, project,
               if({_BEST_IS_MAX}, max(value), min(value)) AS best_value,
               if({_BEST_IS_MAX}, argMax(name, value), argMin(name, value)) AS best_run,
               count() AS runs
        FROM (
            SELECT team, project, name, last_values[{_METRIC}] AS value
            FROM run_table
            WHERE {team_and_project()} AND {RUNS_IN_RANGE} AND mapContains(last_values, {_METRIC})
        )
        GROUP BY team, project
        ORDER BY team, project
        """,
        description="The best value of the metric at a run's last step, among runs that ran during the time range.",
        width=24,
    )


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("runstream: cross-team")
        .uid(UID)
        .tags(["runstream", "admin"])
        .time("now-7d", "now")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(team_variable())
        .with_variable(project_variable())
        .with_variable(metric_variable())
        .with_variable(best_variable())
        .with_panel(_usage())
        .with_panel(_gpu_hours_over_time())
        .with_panel(_best_results())
    )
