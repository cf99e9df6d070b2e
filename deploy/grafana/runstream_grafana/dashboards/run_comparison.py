"""Run comparison: overlaid curves, a runs x params table and a leaderboard.

Curves are read from the ``metric_buckets`` rollup at the coarsest level that still gives about
1,000 points for the longest chosen curve (level L groups 16^L steps), or from raw ``metrics`` rows
when that curve has fewer than 1,000 steps: the SQL picks the level, so a run of 100 million steps
costs the same to draw as one of 100 thousand.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table, trend
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardRegexMapOptions,
    DataTransformerConfig,
    DynamicConfigValue,
    RegexMap,
    ValueMappingResult,
)

from runstream_core.buckets import level_sql, width_sql
from runstream_grafana.dashboards.panels import alert_annotations, alerts_table, partition_by, with_query
from runstream_grafana.dashboards.variables import (
    RUNS_IN_RANGE,
    best_variable,
    datasource_variable,
    in_variable,
    metric_variable,
    option_columns,
    project_variable,
    query_variable,
    run_variable,
    team_and_project,
    team_variable,
    variable_text,
)

UID = "runstream-run-comparison"
MAX_POINTS_PER_CURVE = 1000
DIFFERS = " (differs)"

_METRIC = variable_text("metric")
_GROUP_BY = variable_text("group_by")
_CHOSEN_RUNS = f"{team_and_project()} AND {in_variable('run_id', 'run')} AND {RUNS_IN_RANGE}"
_CHOSEN_ALERTS = f"{team_and_project()} AND {in_variable('run_id', 'run')}"


def _group_by_variable() -> dash.QueryVariable:
    """``run`` (one curve per run), ``param.<key>`` or ``tag.<key>``: one curve per distinct value.

    The prefixes keep a param or tag key that is ``run``, or that starts with ``tag.``, apart from the rest.
    """
    return query_variable(
        "group_by",
        "Curve per",
        f"""SELECT {option_columns("name")} FROM (
    SELECT 'run' AS name
    UNION ALL
    SELECT DISTINCT concat('param.', key) FROM params WHERE {team_and_project()}
    UNION ALL
    SELECT DISTINCT concat('tag.', key) FROM runs ARRAY JOIN mapKeys(tags) AS key WHERE {team_and_project()}
)
ORDER BY text != 'run', text""",
        default="run",
    )


def _overlay() -> trend.Panel:
    return (
        with_query(
            trend.Panel().x_field("step").show_points(common.VisibilityMode.NEVER),
            "${metric:text} by step",
            f"""
            WITH
                chosen AS (
                    SELECT r.run_id AS run_id,
                           multiIf({_GROUP_BY} = 'run', r.name,
                                   startsWith({_GROUP_BY}, 'tag.'),
                                   concat(substring({_GROUP_BY}, 5), '=', t.tags[substring({_GROUP_BY}, 5)]),
                                   startsWith({_GROUP_BY}, 'param.'),
                                   concat(substring({_GROUP_BY}, 7), '=', r.params[substring({_GROUP_BY}, 7)]),
                                   '') AS series
                    FROM run_table AS r
                    LEFT JOIN (
                        SELECT run_id, argMax(tags, updated_at) AS tags
                        FROM runs
                        WHERE {team_and_project()} AND {in_variable("run_id", "run")}
                        GROUP BY run_id
                    ) AS t ON t.run_id = r.run_id
                    WHERE {_CHOSEN_RUNS}
                      AND ({_GROUP_BY} = 'run' OR startsWith({_GROUP_BY}, 'tag.') OR startsWith({_GROUP_BY}, 'param.'))
                ),
                (
                    SELECT max(last_step) FROM metric_summary
                    WHERE {team_and_project()} AND run_id IN (SELECT run_id FROM chosen) AND key = {_METRIC}
                ) AS longest,
                {level_sql("longest", MAX_POINTS_PER_CURVE)} AS curve_level,
                {width_sql("curve_level")} AS steps_per_bucket
            SELECT step, series, value
            FROM (
                SELECT m.step AS step, c.series AS series, avg(m.value) AS value
                FROM metrics AS m
                INNER JOIN chosen AS c ON m.run_id = c.run_id
                WHERE curve_level = 0 AND {team_and_project("m")} AND m.run_id IN (SELECT run_id FROM chosen)
                  AND m.key = {_METRIC}
                GROUP BY step, series
                UNION ALL
                SELECT intDiv(b.bucket * steps_per_bucket
                              + least((b.bucket + 1) * steps_per_bucket - 1, max(b.last_step)), 2) AS step,
                       c.series AS series,
                       sum(b.sum_value) / sum(b.points) AS value
                FROM metric_buckets AS b
                INNER JOIN chosen AS c ON b.run_id = c.run_id
                WHERE curve_level > 0 AND {team_and_project("b")} AND b.run_id IN (SELECT run_id FROM chosen)
                  AND b.key = {_METRIC} AND b.level = curve_level
                GROUP BY b.bucket, c.series
            )
            ORDER BY series, step
            """,
            description=(
                "One curve per run, or per value of the param/tag chosen in 'Curve per' (runs averaged). "
                "Long curves are bucket means at the middle step of each bucket."
            ),
            width=24,
            height=10,
        )
        # One frame per curve, each with its own step axis.
        .with_transformation(partition_by("series"))
    )


def _params_table() -> table.Panel:
    differs_pattern = ".*" + DIFFERS.replace("(", r"\(").replace(")", r"\)") + "$"
    return (
        with_query(
            table.Panel(),
            "Params of the chosen runs",
            f"""
            WITH chosen AS (
                SELECT run_id, name, params FROM run_table WHERE {_CHOSEN_RUNS}
            )
            SELECT if(differs, concat(key, '{DIFFERS}'), key) AS param, run, value, differs
            FROM (
                SELECT key, name AS run, value,
                       uniqExact(value) OVER (PARTITION BY key) > 1
                           OR count() OVER (PARTITION BY key) < (SELECT count() FROM chosen) AS differs
                FROM chosen
                ARRAY JOIN mapKeys(params) AS key, mapValues(params) AS value
            )
            ORDER BY differs DESC, param, run
            """,
            description="One row per param, one column per run; rows of params whose values differ are highlighted.",
            width=12,
            height=10,
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="groupingToMatrix",
                options={"rowField": "param", "columnField": "run", "valueField": "value", "emptyValue": "empty"},
            )
        )
        .override_by_regexp(
            "^param",
            [
                DynamicConfigValue(
                    id_val="custom.cellOptions",
                    value=common.TableColoredBackgroundCellOptions(apply_to_row=True),
                ),
                DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        RegexMap(
                            DashboardRegexMapOptions(
                                pattern=differs_pattern, result=ValueMappingResult(color="orange", index=0)
                            )
                        )
                    ],
                ),
                DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "transparent"}),
            ],
        )
    )


def _summary_table() -> table.Panel:
    return with_query(
        table.Panel(),
        "${metric:text} of the chosen runs",
        f"""
        SELECT r.name AS run, sum(s.points) AS points, min(s.min_value) AS min_value, max(s.max_value) AS max_value,
               argMaxMerge(s.last) AS last_value, max(s.last_step) AS last_step
        FROM metric_summary AS s
        INNER JOIN (SELECT run_id, name FROM run_table WHERE {_CHOSEN_RUNS}) AS r ON s.run_id = r.run_id
        WHERE {team_and_project("s")} AND {in_variable("s.run_id", "run")} AND s.key = {_METRIC}
        GROUP BY run
        ORDER BY run
        """,
        description="Points logged, extremes and the value at the last step, from the metric_summary rollup.",
        width=12,
        height=10,
    )


def _leaderboard() -> table.Panel:
    return with_query(
        table.Panel(),
        "Leaderboard: best ${metric:text}",
        f"""
        SELECT name, run_id, project, user, status,
               last_values[{_METRIC}] AS value, last_steps[{_METRIC}] AS step
        FROM run_table
        WHERE {team_and_project()} AND {RUNS_IN_RANGE} AND mapContains(last_values, {_METRIC})
        ORDER BY if({variable_text("best")} = 'max', -value, value), name
        LIMIT 20
        """,
        description="Runs of the chosen teams and projects ranked by the metric's value at their last step.",
        width=24,
        height=10,
    )


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("runstream: run comparison")
        .uid(UID)
        .tags(["runstream", "team"])
        .time("now-7d", "now")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(team_variable())
        .with_variable(project_variable())
        .with_variable(run_variable())
        .with_variable(metric_variable())
        .with_variable(_group_by_variable())
        .with_variable(best_variable())
        .with_panel(_overlay())
        .with_panel(_params_table())
        .with_panel(_summary_table())
        .with_panel(_leaderboard())
        .annotation(alert_annotations(_CHOSEN_ALERTS))
        .with_panel(
            alerts_table(
                _CHOSEN_ALERTS,
                description="Alert messages of the chosen runs in the time range, newest first.",
            )
        )
    )
