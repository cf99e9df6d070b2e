"""Dashboard variables shared by the dashboards, and the SQL that reads them.

Names come from producers and may hold any character, so no variable's text ever reaches SQL as it
is. Every query variable returns two columns: the option's value, ``encodeURLComponent(text)``
computed in ClickHouse, then the text shown. SQL reads a variable only as
``'${name:percentencode}'``: Grafana percent-encodes the value (a multi-value one as
``{v1,v2}``, encoded as a whole), which leaves nothing but ``A-Za-z0-9-_.~%`` inside the quotes,
and ClickHouse decodes it back (``selected_texts``, ``variable_text``). Grafana's ``singlequote``
and ``sqlstring`` formats are not safe against ClickHouse's backslash escapes and are never used.

Every include-all variable has the custom all value ``*`` (``ALL_VALUE``), which no option's value
can equal: "All" then costs one constant comparison instead of an IN list of every team, project
or run. ``in_variable`` writes the filter that accepts both.
"""

from __future__ import annotations

import urllib.parse

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models.dashboard import (
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from runstream_grafana.dashboards.clickhouse_query import DATASOURCE, DATASOURCE_UID, PLUGIN_ID

# Grafana's value for "All" in a multi-value variable.
ALL = "$__all"
# Every include-all variable carries this custom all value, which the filters read as "no filter":
# a dashboard never expands "All" into an IN list of every run. No option can have it as its value:
# option values are percent-encoded, and encoding turns ``*`` into ``%2A``.
ALL_VALUE = "*"


def option_value(text: str) -> str:
    """The value of the variable option whose text is ``text``: what ClickHouse's
    ``encodeURLComponent(text)`` returns in the first column of a variable query.

    Grafana stores a choice as this value: ``{"project": option_value("a,b")}``.
    """
    return urllib.parse.quote(text, safe="")


# A run belongs to a time range when it ran during some part of it.
RUNS_IN_RANGE = "started_at <= $__toTime AND (ended_at IS NULL OR ended_at >= $__fromTime)"


def encoded(variable: str) -> str:
    """The variable as a SQL string literal, percent-encoded by Grafana (``%7Ba%2Cb%7D`` for [a, b])."""
    return f"'${{{variable}:percentencode}}'"


def selected_texts(variable: str) -> str:
    """SQL for the array of texts chosen in ``variable``.

    Grafana encodes a list as ``encode("{" + values.join(",") + "}")`` and each value is itself an
    encoded text. Decoding that once, stripping one pair of braces, splitting on commas and decoding
    each element gives the texts; this does the same steps on the encoded string, where a brace or
    comma can only be Grafana's own (``%7B``, ``%7D``, ``%2C``; those of a text arrive as
    ``%257B``...) and no line break can occur (ClickHouse versions differ on whether ``.`` matches
    one), then decodes each element twice. A value typed by hand is read as an option value: a
    comma in it separates texts, ``%2C`` stands for a comma.
    """
    unwrapped = f"replaceRegexpOne({encoded(variable)}, '^%7B(.*)%7D$', '\\\\1')"
    return f"arrayMap(x -> decodeURLComponent(decodeURLComponent(x)), splitByString('%2C', {unwrapped}))"


def is_all(variable: str) -> str:
    """SQL that is true when ``variable`` is set to All (its custom all value)."""
    return f"decodeURLComponent({encoded(variable)}) = '{ALL_VALUE}'"


def variable_text(variable: str) -> str:
    """SQL for the text chosen in a single-value variable: its value decoded twice."""
    return f"decodeURLComponent(decodeURLComponent({encoded(variable)}))"


def in_variable(column: str, variable: str) -> str:
    """``column`` is one of the texts selected in ``variable``, or the variable is set to All.

    ``column IN (SELECT arrayJoin(...))`` keeps ClickHouse's primary-key pruning on ``team``,
    ``project`` and ``run_id`` (``has(array, column)`` is not used for the index by ClickHouse 25.8).
    """
    return f"({column} IN (SELECT arrayJoin({selected_texts(variable)})) OR {is_all(variable)})"


def option_columns(text: str, value_of: str | None = None) -> str:
    """The two columns of a variable query: the value (``value_of`` encoded, ``text`` by default) and the text."""
    return f"encodeURLComponent({value_of or text}) AS value, {text} AS text"


def team_and_project(prefix: str = "") -> str:
    """The team and project filters, on columns of the table aliased ``prefix`` if given."""
    qualify = f"{prefix}." if prefix else ""
    return f"{in_variable(qualify + 'team', 'team')} AND {in_variable(qualify + 'project', 'project')}"


def _option(value: str, text: str) -> VariableOption:
    return VariableOption(selected=True, text=text, value=value)


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
    default: str | None = None,
    refresh: VariableRefresh = VariableRefresh.ON_TIME_RANGE_CHANGED,
    sort: VariableSort = VariableSort.DISABLED,
) -> dash.QueryVariable:
    """A variable fed by ``sql``, whose columns are ``option_columns``: the value, then the text shown.

    Multi-value variables offer All, selected by default; single-value ones start on the option
    whose text is ``default``.
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
        return variable.all_value(ALL_VALUE).current(_option(ALL, "All"))
    if default is None:
        raise ValueError(f"single-value variable {name!r} needs a default")
    return variable.current(_option(option_value(default), default))


def team_variable() -> dash.QueryVariable:
    return query_variable(
        "team",
        "Team",
        f"SELECT DISTINCT {option_columns('team')} FROM runs ORDER BY text",
        multi=True,
        refresh=VariableRefresh.ON_DASHBOARD_LOAD,
    )


def project_variable() -> dash.QueryVariable:
    return query_variable(
        "project",
        "Project",
        f"SELECT DISTINCT {option_columns('project')} FROM runs WHERE {in_variable('team', 'team')} ORDER BY text",
        multi=True,
        refresh=VariableRefresh.ON_DASHBOARD_LOAD,
    )


def run_variable() -> dash.QueryVariable:
    """Runs active in the time range, newest first; the value is the run id, the text its name."""
    return query_variable(
        "run",
        "Runs",
        f"SELECT {option_columns('name', value_of='run_id')} FROM run_table"
        f" WHERE {team_and_project()} AND {RUNS_IN_RANGE} ORDER BY started_at DESC, run_id",
        multi=True,
    )


def metric_variable(default: str = "loss") -> dash.QueryVariable:
    return query_variable(
        "metric",
        "Metric",
        f"SELECT DISTINCT {option_columns('key')} FROM metric_summary WHERE {team_and_project()} ORDER BY text",
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
