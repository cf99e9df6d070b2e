"""What ``runstream migrate`` runs, in the target's form: as written for one node, or for a cluster.

The plan is made before anything is connected to: the database, the tracking table, every
migration's statements (all of them, in order, so that the cluster form knows the tables earlier
migrations created) and the raw retention. ``runstream migrate --dry-run`` prints it; a migration
without a cluster form fails here, before the first statement runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clickhouse_connect.driver.binding import quote_identifier

from runstream_core.cluster import local_table
from runstream_core.cluster_ddl import ClusterFormError, ClusterSchema
from runstream_core.settings import ClickHouseSettings

if TYPE_CHECKING:
    from runstream_worker.migrate import Migration

TRACKING_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version
""".strip()

# Raw tables and the time column their retention counts from; rollups are kept.
RAW_TABLES = {"metrics": "ts", "hardware": "ts"}


@dataclass(frozen=True)
class MigrationPlan:
    database: str
    cluster: ClusterSchema | None
    create_database: str
    tracking: tuple[str, ...]
    steps: tuple[tuple[Migration, tuple[str, ...]], ...]
    """Each migration with its statements in the target's form."""

    @classmethod
    def build(cls, settings: ClickHouseSettings, migrations: Sequence[Migration]) -> MigrationPlan:
        database = settings.clickhouse_database
        if not settings.clickhouse_cluster:
            return cls(
                database,
                None,
                f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}",
                (TRACKING_TABLE,),
                tuple((m, tuple(m.statements())) for m in migrations),
            )
        cluster = ClusterSchema(settings.clickhouse_cluster, database)
        tracking = tuple(cluster.translate(TRACKING_TABLE))
        steps = []
        for migration in migrations:
            try:
                statements = tuple(s for statement in migration.statements() for s in cluster.translate(statement))
            except ClusterFormError as exc:
                raise ClusterFormError(f"migration {migration.label} has no cluster form: {exc}") from exc
            steps.append((migration, statements))
        return cls(database, cluster, cluster.create_database(), tracking, tuple(steps))

    def stored(self, table: str) -> str:
        """The table that holds ``table``'s rows on the server a client is connected to."""
        return local_table(table) if self.cluster else table

    def alter(self, table: str) -> str:
        """``ALTER TABLE`` of the table that holds ``table``'s rows, on every shard of a cluster."""
        clause = f" {self.cluster.clause}" if self.cluster else ""
        return f"ALTER TABLE {quote_identifier(self.stored(table))}{clause}"

    def retention(self, days: int) -> list[str]:
        """Statements keeping raw rows ``days`` days, dropping whole parts (``days`` > 0)."""
        return [
            statement
            for table, column in RAW_TABLES.items()
            for statement in (
                f"{self.alter(table)} MODIFY TTL toDateTime({column}) + toIntervalDay({int(days)})",
                f"{self.alter(table)} MODIFY SETTING ttl_only_drop_parts = 1",
            )
        ]

    def script(self, retention_days: int) -> str:
        """Every statement, in order, as a script a person can review (or feed to clickhouse-client)."""
        form = f"the cluster {self.cluster.cluster}" if self.cluster else "one node"
        lines = [
            f"-- runstream migrate for {form}: database {self.database}, {len(self.steps)} migration(s).",
            "-- Each migration's statements run once and the migration is then recorded in schema_migrations.",
            f"{self.create_database};",
            "",
            f"-- The statements below run in database {self.database} (clickhouse-client --database).",
            "-- schema_migrations: the applied migrations and their checksums",
            *(f"{statement};\n" for statement in self.tracking),
        ]
        for migration, statements in self.steps:
            lines.append(f"-- {migration.label}")
            lines += [f"{statement};\n" for statement in statements]
        if retention_days > 0:
            lines.append(f"-- raw rows kept {retention_days} day(s) (RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS)")
            lines += [f"{statement};" for statement in self.retention(retention_days)]
        else:
            lines.append("-- raw rows kept forever (RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS=0): a TTL set before is removed")
        return "\n".join(lines) + "\n"
