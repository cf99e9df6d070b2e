"""Helpers that give a panel of any kind its title, size and one ClickHouse query."""

from __future__ import annotations

import textwrap
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef, DataTransformerConfig

from runstream_grafana.dashboards.clickhouse_query import DATASOURCE, ClickHouseQueryBuilder


class SqlPanel(Protocol):
    """The setters every panel builder of the SDK has."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: DataSourceRef) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...


P = TypeVar("P", bound=SqlPanel)


def sql(text: str) -> str:
    """SQL written indented in the source, stored without the indentation."""
    return textwrap.dedent(text).strip()


def with_query(
    panel: P,
    title: str,
    query: str,
    *,
    description: str,
    time_series: bool = False,
    width: int = 12,
    height: int = 8,
) -> P:
    """``panel`` titled and sized, reading ``query`` (a table, or a time series when ``time_series``)."""
    target = ClickHouseQueryBuilder().ref_id("A").raw_sql(sql(query))
    target = target.time_series() if time_series else target.table()
    return (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target)
        .span(width)
        .height(height)
    )


def partition_by(field: str) -> DataTransformerConfig:
    """Splits one long result into one frame per value of ``field`` (one curve per run or group)."""
    return DataTransformerConfig(
        id_val="partitionByValues",
        options={"fields": [field], "keepFields": False, "naming": {"asLabels": False}},
    )


ALERT_COLUMNS = "ts, level, event, rule, kind, subject, project, run_id, title, text, delivery"


def alerts_table(where: str, *, description: str, width: int = 24) -> table.Panel:
    """The "Alerts" panel: the alert messages of the runs ``where`` selects, newest first."""
    return with_query(
        table.Panel(),
        "Alerts",
        f"""
        SELECT {ALERT_COLUMNS}
        FROM alerts FINAL
        WHERE {where} AND $__timeFilter(ts)
        ORDER BY ts DESC, alert_id
        LIMIT 500
        """,
        description=description,
        width=width,
    )


def alert_annotations(where: str) -> dash.AnnotationQuery:
    """Alerts fired or raised by the runs ``where`` selects, as annotations on every time axis."""
    target = (
        ClickHouseQueryBuilder()
        .ref_id("Alerts")
        .raw_sql(
            sql(
                f"""
                SELECT ts AS time, title, concat(text, ' (', project, '/', run_id, ')') AS text,
                       [level, kind, rule] AS tags
                FROM alerts FINAL
                WHERE {where} AND event != 'resolved' AND $__timeFilter(ts)
                ORDER BY ts
                LIMIT 1000
                """
            )
        )
        .table()
    )
    return (
        dash.AnnotationQuery()
        .name("Alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        # The SDK types annotation targets as Grafana's own; the plugin's SQL query is what it runs.
        .target(target)  # type: ignore[arg-type]
    )
