"""Apply ``schemas/migrations/NNNN_*.sql`` in order, once each, recording them in ``schema_migrations``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.errors import RunstreamError
from runstream_core.log import get_logger
from runstream_worker.settings import WorkerSettings

log = get_logger("runstream.migrate")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_TRACKING_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version
"""


class MigrationError(RunstreamError):
    """A migration file is malformed, was edited after being applied, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Statements of the file, split on ``;`` at line ends, comment lines removed."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        return [part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()]


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Migrations shipped in ``runstream_core/migrations``, in version order."""
    root = directory or Path(str(resources.files("runstream_core") / "migrations"))
    found = []
    for path in sorted(root.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {root}")
    return found


def applied(client: Client, database: str = "") -> dict[int, str]:
    """Applied versions and their checksums (``database`` is a qualifying prefix such as "`db`.")."""
    # `database` is the settings' database name, validated as an identifier: not user input.
    sql = f"SELECT version, checksum FROM {database}schema_migrations ORDER BY version"  # noqa: S608
    rows = client.query(sql).result_rows
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(settings: WorkerSettings, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations; returns those applied now (empty when up to date)."""
    todo = migrations if migrations is not None else load_migrations()
    bootstrap = connect(settings, with_database=False)
    try:
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{settings.clickhouse_database}`")
    finally:
        bootstrap.close()
    client = connect(settings)
    try:
        newly = _apply(client, todo)
        apply_retention(client, settings.clickhouse_raw_ttl_days)
        return newly
    finally:
        client.close()


# Raw tables and the time column their retention counts from; rollups are kept.
_RAW_TABLES = {"metrics": "ts", "hardware": "ts"}


def apply_retention(client: Client, days: int) -> None:
    """Keep raw points ``days`` days (0: forever), dropping whole parts; idempotent, runs on every migrate."""
    for table, column in _RAW_TABLES.items():
        if days > 0:
            client.command(f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + toIntervalDay({int(days)})")
            client.command(f"ALTER TABLE {table} MODIFY SETTING ttl_only_drop_parts = 1")
        elif "TTL" in _create_statement(client, table):
            client.command(f"ALTER TABLE {table} REMOVE TTL")
    log.info("raw retention", days=days or "forever", tables=sorted(_RAW_TABLES))


def _create_statement(client: Client, table: str) -> str:
    return str(
        client.query(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        ).result_rows[0][0]
    )


def _apply(client: Client, migrations: list[Migration]) -> list[Migration]:
    client.command(_TRACKING_TABLE)
    done = applied(client)
    newly = []
    for migration in migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                    "migrations are additive: add a new file instead of editing an applied one"
                )
            continue
        for statement in migration.statements():
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        log.info("migration applied", version=migration.version, name=migration.name)
        newly.append(migration)
    return newly


def pending(settings: WorkerSettings) -> list[Migration]:
    """Migrations not yet applied to the configured database (all of them if it does not exist)."""
    client = connect(settings, with_database=False)
    try:
        tracked = client.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'",
            parameters={"db": settings.clickhouse_database},
        ).result_rows[0][0]
        done = applied(client, f"`{settings.clickhouse_database}`.") if tracked else {}
    finally:
        client.close()
    return [m for m in load_migrations() if m.version not in done]
