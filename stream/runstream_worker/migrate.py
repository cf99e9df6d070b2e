"""Apply ``schemas/migrations/NNNN_*.sql`` in order, once each, recording them in ``schema_migrations``.

On a cluster (``RUNSTREAM_CLICKHOUSE_CLUSTER``) each statement runs in its cluster form
(``migration_plan.py``, ``runstream_core/cluster_ddl.py``); the checksums stay those of the files.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.cluster_ddl import ClusterFormError
from runstream_core.errors import RunstreamError
from runstream_core.log import get_logger
from runstream_worker.migration_plan import RAW_TABLES, MigrationPlan
from runstream_worker.settings import WorkerSettings

log = get_logger("runstream.migrate")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RunstreamError):
    """A migration file is malformed, was edited after being applied, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

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


def plan(settings: WorkerSettings, migrations: list[Migration] | None = None) -> MigrationPlan:
    """Every statement ``migrate`` would run, in the target's form; connects to nothing."""
    try:
        return MigrationPlan.build(settings, migrations if migrations is not None else load_migrations())
    except ClusterFormError as exc:
        raise MigrationError(str(exc)) from exc


def migrate(settings: WorkerSettings, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations; returns those applied now (empty when up to date)."""
    todo = plan(settings, migrations)
    bootstrap = connect(settings, with_database=False)
    try:
        bootstrap.command(todo.create_database)
    finally:
        bootstrap.close()
    client = connect(settings)
    try:
        newly = _apply(client, todo)
        apply_retention(client, settings.clickhouse_raw_ttl_days, todo)
        return newly
    finally:
        client.close()


def apply_retention(client: Client, days: int, todo: MigrationPlan) -> None:
    """Keep raw points ``days`` days (0: forever), dropping whole parts; idempotent, runs on every migrate."""
    if days > 0:
        for statement in todo.retention(days):
            client.command(statement)
    else:
        for table in RAW_TABLES:
            if "TTL" in _create_statement(client, todo.stored(table)):
                client.command(f"{todo.alter(table)} REMOVE TTL")
    log.info("raw retention", days=days or "forever", tables=sorted(RAW_TABLES), cluster=todo.cluster is not None)


def _create_statement(client: Client, table: str) -> str:
    return str(
        client.query(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        ).result_rows[0][0]
    )


def _apply(client: Client, todo: MigrationPlan) -> list[Migration]:
    for statement in todo.tracking:
        client.command(statement)
    done = applied(client)
    newly = []
    for migration, statements in todo.steps:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.label} changed after it was applied; "
                    "migrations are additive: add a new file instead of editing an applied one"
                )
            continue
        for statement in statements:
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(f"migration {migration.label} failed: {exc}") from exc
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        log.info("migration applied", version=migration.version, name=migration.name, cluster=todo.cluster is not None)
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
