"""Migrations on the real embedded ClickHouse engine (chDB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream_core.clickhouse import connect
from runstream_worker.migrate import Migration, MigrationError, load_migrations, migrate, pending
from tests.fixtures.settings import StackSettings as Settings


def test_migrate_creates_tables_once_and_records_versions(chdb_settings: Settings) -> None:
    assert [m.version for m in pending(chdb_settings)] == [m.version for m in load_migrations()]
    applied = migrate(chdb_settings)
    assert [m.name for m in applied] == [
        "initial",
        "sdk_events",
        "rollups",
        "pipeline_health",
        "run_latest",
        "insert_tokens",
        "fine_rollups",
        "alerts",
    ]
    assert migrate(chdb_settings) == []  # idempotent
    assert pending(chdb_settings) == []

    client = connect(chdb_settings)
    try:
        tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
        assert {"runs", "params", "metrics", "hardware", "summary", "ingested_records", "schema_migrations"} <= tables
        assert {"alerts", "alert_state"} <= tables
        assert client.query("SELECT version, name FROM schema_migrations ORDER BY version").result_rows == [
            (1, "initial"),
            (2, "sdk_events"),
            (3, "rollups"),
            (4, "pipeline_health"),
            (5, "run_latest"),
            (6, "insert_tokens"),
            (8, "fine_rollups"),
            (9, "alerts"),
        ]
        order = client.query(
            "SELECT sorting_key FROM system.tables WHERE database = 'runstream' AND name = 'metrics'"
        ).result_rows
        assert order == [("team, project, run_id, key, step",)]
    finally:
        client.close()


def test_editing_an_applied_migration_is_refused(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    edited = [Migration(1, "initial", load_migrations()[0].sql + "\n-- edited\n")]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(chdb_settings, edited)


def test_a_new_migration_is_applied_after_the_existing_ones(chdb_settings: Settings) -> None:
    migrate(chdb_settings)
    extra = [*load_migrations(), Migration(99, "add_note", "ALTER TABLE runs ADD COLUMN IF NOT EXISTS note String;")]
    assert [m.version for m in migrate(chdb_settings, extra)] == [99]
    client = connect(chdb_settings)
    try:
        columns = {row[0] for row in client.query("DESCRIBE TABLE runs").result_rows}
    finally:
        client.close()
    assert "note" in columns


def test_a_failing_statement_names_the_migration(chdb_settings: Settings) -> None:
    broken = [Migration(1, "broken", "CREATE TABLE nonsense (;")]
    with pytest.raises(MigrationError, match="0001_broken failed"):
        migrate(chdb_settings, broken)


def test_misnamed_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_initial.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_snake_name\.sql"):
        load_migrations(tmp_path)


def test_statements_split_on_semicolons_at_line_ends() -> None:
    migration = Migration(
        1, "x", "-- comment; not a statement\nCREATE TABLE a (x String DEFAULT ';')\nENGINE = Log;\nSELECT 1;\n"
    )
    assert migration.statements() == ["CREATE TABLE a (x String DEFAULT ';')\nENGINE = Log", "SELECT 1"]


def test_raw_retention_is_applied_changed_and_removed_by_migrate(chdb_settings: Settings) -> None:
    def ttl_of(table: str) -> str:
        client = connect(chdb_settings)
        try:
            query = client.query(
                "SELECT create_table_query FROM system.tables WHERE database = 'runstream' AND name = {t:String}",
                parameters={"t": table},
            ).result_rows[0][0]
        finally:
            client.close()
        return str(query).split(" TTL ")[1].split(" SETTINGS")[0] if " TTL " in query else ""

    migrate(chdb_settings.model_copy(update={"clickhouse_raw_ttl_days": 30}))
    assert ttl_of("metrics") == "toDateTime(ts) + toIntervalDay(30)"
    assert ttl_of("hardware") == "toDateTime(ts) + toIntervalDay(30)"
    migrate(chdb_settings.model_copy(update={"clickhouse_raw_ttl_days": 7}))
    assert ttl_of("metrics") == "toDateTime(ts) + toIntervalDay(7)"
    migrate(chdb_settings)  # 0: keep forever
    assert ttl_of("metrics") == "" and ttl_of("hardware") == ""
