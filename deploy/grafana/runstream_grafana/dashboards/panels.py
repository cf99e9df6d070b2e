"""Helpers that give a panel of any kind its title, size and one ClickHouse query."""

from __future__ import annotations

import textwrap
from typing import Protocol, Self, TypeVar

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
