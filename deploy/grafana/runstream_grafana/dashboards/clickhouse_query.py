"""A panel target of the official ClickHouse plugin (grafana-clickhouse-datasource), as a cog dataquery.

grafana-foundation-sdk ships query builders for Grafana's core datasources only. This module adds
the plugin's SQL-editor query in the SDK's own shape: a ``Dataquery`` model with ``to_json`` /
``from_json``, a ``Builder`` for it, and a runtime variant so dashboards parsed back with
``Dashboard.from_json`` get ``ClickHouseQuery`` targets again.
"""

from __future__ import annotations

import enum
from typing import Any, Final, Literal, Self, cast

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PLUGIN_ID: Final = "grafana-clickhouse-datasource"
# The uid of the provisioned datasource (deploy/grafana/provisioning/datasources/clickhouse.yaml) and of
# the one `runstream teams sync` creates in each team's organization: the dashboards open on it.
DATASOURCE_UID: Final = "runstream-clickhouse"
# Every query goes to the datasource picked in the dashboard's ``datasource`` variable.
DATASOURCE: Final = DataSourceRef(type_val=PLUGIN_ID, uid="${datasource}")
# Queries saved without a v4 plugin version are migrated by the plugin as v3 queries on load.
PLUGIN_VERSION: Final = "4.0.0"

QueryType = Literal["table", "timeseries"]


class Format(enum.IntEnum):
    """How the plugin shapes the result: long time series become one field per label set."""

    TIME_SERIES = 0
    TABLE = 1


_FORMAT_OF: Final[dict[str, Format]] = {"table": Format.TABLE, "timeseries": Format.TIME_SERIES}


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw SQL query of the ClickHouse plugin."""

    def __init__(
        self,
        raw_sql: str = "",
        ref_id: str = "A",
        query_type: QueryType = "table",
        datasource: DataSourceRef | None = None,
        hide: bool | None = None,
        plugin_version: str = PLUGIN_VERSION,
    ) -> None:
        if query_type not in _FORMAT_OF:
            raise ValueError(f"query_type must be one of {sorted(_FORMAT_OF)}, got {query_type!r}")
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.query_type: QueryType = query_type
        self.datasource = datasource if datasource is not None else DATASOURCE
        self.hide = hide
        self.plugin_version = plugin_version

    @property
    def format(self) -> Format:
        return _FORMAT_OF[self.query_type]

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": self.datasource,
            "editorType": "sql",
            "format": int(self.format),
            "pluginVersion": self.plugin_version,
            "queryType": self.query_type,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        if data.get("editorType", "sql") != "sql":
            raise ValueError(f"only SQL-editor queries are supported, got editorType {data.get('editorType')!r}")
        query_type = data.get("queryType", "table")
        if "format" in data and _FORMAT_OF.get(query_type) != data["format"]:
            raise ValueError(f"format {data['format']!r} does not match queryType {query_type!r}")
        return cls(
            raw_sql=data.get("rawSql", ""),
            ref_id=data.get("refId", "A"),
            query_type=cast(QueryType, query_type),
            datasource=DataSourceRef.from_json(data["datasource"]) if "datasource" in data else None,
            hide=data.get("hide"),
            plugin_version=data.get("pluginVersion", PLUGIN_VERSION),
        )


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builds a ``ClickHouseQuery``: ``ClickHouseQueryBuilder().raw_sql("SELECT ...").time_series()``."""

    def __init__(self) -> None:
        self._internal = ClickHouseQuery()

    def build(self) -> ClickHouseQuery:
        return self._internal

    def raw_sql(self, raw_sql: str) -> Self:
        self._internal.raw_sql = raw_sql
        return self

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Rows as they are (format 1)."""
        self._internal.query_type = "table"
        return self

    def time_series(self) -> Self:
        """A time column, string label columns and value columns, pivoted per label set (format 0)."""
        self._internal.query_type = "timeseries"
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self


def variant_config() -> cogruntime.DataqueryConfig:
    return cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=ClickHouseQuery.from_json)


# Parsing a dashboard (Dashboard.from_json) looks targets up by datasource type in the runtime.
cogruntime.register_dataquery_variant(variant_config())
