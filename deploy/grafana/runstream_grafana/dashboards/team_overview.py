"""Team overview: what a team's runs are doing and what their GPUs cost.

Team dashboards carry no hidden team filter: each team's ClickHouse user sees its own rows only
(row policies). The ``team`` variable narrows further and lists only teams the user can see.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, piechart, table
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.piechart import PieChartLabels, PieChartType

from runstream_core import hardware_keys as hw
from runstream_grafana.dashboards.panels import alert_annotations, alerts_table, with_query
from runstream_grafana.dashboards.variables import (
    RUNS_IN_RANGE,
    datasource_variable,
    in_variable,
    metric_variable,
    option_columns,
    project_variable,
    query_variable,
    team_and_project,
    team_variable,
    variable_text,
)

UID = "runstream-team-overview"

# Runs of the chosen teams, projects and groups that ran during the time range.
_RUNS = f"{team_and_project()} AND {in_variable('run_group', 'group')} AND {RUNS_IN_RANGE}"
_LATEST_STEP = "if(empty(last_steps), -1, arrayMax(mapValues(last_steps)))"
_METRIC = variable_text("metric")
_KEY_METRIC = f"if(mapContains(last_values, {_METRIC}), last_values[{_METRIC}], NULL)"


def _group_variable() -> dash.QueryVariable:
    return query_variable(
        "group",
        "Group",
        f"SELECT DISTINCT {option_columns('run_group')} FROM runs WHERE {team_and_project()} AND run_group != ''"
        " ORDER BY text",
        multi=True,
    )


def _runs_by_state() -> piechart.Panel:
    return with_query(
        piechart.Panel()
        .pie_type(PieChartType.DONUT)
        .display_labels([PieChartLabels.NAME, PieChartLabels.VALUE])
        .reduce_options(common_builders.ReduceDataOptions().values(True).calcs(["lastNotNull"])),
        "Runs by state",
        f"""
        SELECT status, count() AS runs
        FROM run_table
        WHERE {_RUNS}
        GROUP BY status
        ORDER BY status
        """,
        description="Runs that ran during the time range, by their current state.",
        width=8,
    )


def _gpu_utilization() -> barchart.Panel:
    return with_query(
        barchart.Panel().x_field("utilization").show_value(common.VisibilityMode.AUTO),
        "GPU utilization distribution",
        f"""
        SELECT concat(toString(bucket * 10), '-', toString(bucket * 10 + 10), '%') AS utilization, gpu_minutes
        FROM (
            SELECT least(9, intDiv(toUInt32(mean_utilization), 10)) AS bucket, count() AS gpu_minutes
            FROM (
                SELECT run_id, host, device, minute, sum(sum_value) / sum(samples) AS mean_utilization
                FROM hardware_minute
                WHERE key = '{hw.GPU_UTILIZATION_PERCENT}' AND {team_and_project()} AND $__timeFilter(minute)
                GROUP BY run_id, host, device, minute
            )
            GROUP BY bucket
            ORDER BY bucket WITH FILL FROM 0 TO 10
        )
        ORDER BY bucket
        """,
        description="GPU-minutes by mean utilization over the minute: a tall 0-10% bar means GPUs held but idle.",
        width=8,
    ).unit("short")


def _gpu_hours_this_week() -> table.Panel:
    return (
        with_query(
            table.Panel(),
            "GPU-hours this week by project and user",
            f"""
            SELECT project, user, sum(gpu_hours) AS gpu_hours, sum(busy_gpu_hours) AS busy_gpu_hours,
                   round(100 * busy_gpu_hours / gpu_hours, 1) AS busy_percent
            FROM gpu_hours
            WHERE {team_and_project()} AND $__timeFilter(hour)
            GROUP BY project, user
            ORDER BY gpu_hours DESC, project, user
            """,
            description="GPU-hours held since Monday (busy: weighted by utilization), from the gpu_hours rollup.",
            width=8,
        )
        .time_from("now/w")
        .decimals(2)
    )


def _active_runs() -> table.Panel:
    return with_query(
        table.Panel(),
        "Active runs: latest step and ${metric:text}",
        f"""
        SELECT name, run_id, project, user, started_at, {_LATEST_STEP} AS step, {_KEY_METRIC} AS last_value,
               stalled
        FROM run_table
        WHERE {_RUNS} AND status = 'running'
        ORDER BY started_at DESC, run_id
        """,
        description="Running runs; stalled: the step has not moved for a while.",
        width=24,
    )


def _failed_runs() -> table.Panel:
    return with_query(
        table.Panel(),
        "Failed and crashed runs",
        f"""
        SELECT name, run_id, project, user, status, started_at, ended_at, {_LATEST_STEP} AS last_step
        FROM run_table
        WHERE {_RUNS} AND status IN ('failed', 'crashed')
        ORDER BY coalesce(ended_at, started_at) DESC, run_id
        """,
        description="Failed: the job reported an error. Crashed: it stopped sending heartbeats.",
        width=24,
    )


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("runstream: team overview")
        .uid(UID)
        .tags(["runstream", "team"])
        .time("now-24h", "now")
        .refresh("1m")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(team_variable())
        .with_variable(project_variable())
        .with_variable(_group_variable())
        .with_variable(metric_variable())
        .with_panel(_runs_by_state())
        .with_panel(_gpu_utilization())
        .with_panel(_gpu_hours_this_week())
        .with_panel(_active_runs())
        .annotation(alert_annotations(team_and_project()))
        .with_panel(_failed_runs())
        .with_panel(
            alerts_table(
                team_and_project(),
                description="Alert messages of the team's runs in the time range (rules: `runstream alerts apply`); "
                "delivery: sent, suppressed within the rule's wait_duration, failed (dead-lettered), none.",
            )
        )
    )
