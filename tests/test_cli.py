"""The `runstream` command, run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runstream_worker.migrate import load_migrations
from tests.fixtures.cluster import cluster_plan


def runstream(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_migrate_applies_once_then_reports_up_to_date(tmp_path: Path) -> None:
    env = {"RUNSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}"}
    first = runstream("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied {len(load_migrations())} migration(s)"
    second = runstream("migrate", env=env)
    assert second.stdout.strip() == "schema is up to date"


def test_migrate_dry_run_prints_the_cluster_form_and_touches_nothing(tmp_path: Path) -> None:
    env = {"RUNSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}", "RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS": "30"}
    result = runstream("migrate", "--cluster", "runstream", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == cluster_plan().script(30)
    assert "ON CLUSTER `runstream`" in result.stdout and "ENGINE = Distributed('runstream'" in result.stdout
    assert not (tmp_path / "db").exists()
    # The setting names the cluster as --cluster does.
    by_setting = runstream("migrate", "--dry-run", env={**env, "RUNSTREAM_CLICKHOUSE_CLUSTER": "runstream"})
    assert by_setting.stdout == result.stdout


def test_migrate_refuses_a_hostile_cluster_name_and_a_cluster_on_the_embedded_store(tmp_path: Path) -> None:
    env = {"RUNSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}"}
    hostile = runstream("migrate", "--cluster", "x` ; DROP TABLE runs; --", "--dry-run", env=env)
    assert hostile.returncode == 1
    assert hostile.stdout == ""
    assert "runstream: unsafe cluster name 'x` ; DROP TABLE runs; --'" in hostile.stderr
    by_setting = runstream("migrate", env={**env, "RUNSTREAM_CLICKHOUSE_CLUSTER": "it's"})
    assert by_setting.returncode != 0 and "unsafe cluster name" in by_setting.stderr
    embedded = runstream("migrate", "--cluster", "runstream", env=env)
    assert embedded.returncode == 1
    assert "the cluster runstream needs ClickHouse servers" in embedded.stderr
    assert not (tmp_path / "db").exists()


def test_worker_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    result = runstream("worker", env={"RUNSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}"})
    assert result.returncode == 1
    assert "schema is not up to date: run `runstream migrate`" in result.stderr


def test_invalid_settings_are_reported_by_name(tmp_path: Path) -> None:
    result = runstream("migrate", env={"RUNSTREAM_WORKER_BATCH_RECORDS": "-1"})
    assert result.returncode != 0
    assert "worker_batch_records" in result.stderr
    # A command reads only its component's settings: the SDK's do not stop a migration.
    sdk_only = runstream("schemas", "--check", env={"RUNSTREAM_FLUSH_INTERVAL_S": "-1"})
    assert sdk_only.returncode == 0, sdk_only.stderr


def test_schema_export_is_current() -> None:
    result = runstream("schemas", "--check")
    assert result.returncode == 0, result.stderr


def test_demo_prints_the_comparison_table_from_clickhouse(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = runstream(
        "demo", "--steps", "60", env={"RUNSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "COLUMNS": "160"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "│" in line]
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")] for line in lines]
    assert sorted((r[0], r[1], r[2], r[3], r[4]) for r in rows) == [
        ("nlp", "bert-finetune", "base", "finished", "60"),
        ("nlp", "bert-finetune", "high-lr", "failed", "36"),
        ("nlp", "bert-finetune", "warmup", "finished", "60"),
        ("vision", "resnet50", "adamw", "finished", "60"),
        ("vision", "resnet50", "baseline", "finished", "60"),
        ("vision", "resnet50", "lr-0.03", "finished", "60"),
    ]
    # 3 train/lr points a step plus 2 eval points every 50th step: 5 runs x (180 + 4), the failed one 108 + 2
    assert "1,030 metric points stored" in result.stdout


def test_sync_of_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = runstream("sync", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert f"runstream: {tmp_path / 'nowhere'} does not exist" in result.stderr


def test_sync_with_nothing_spooled_says_so(tmp_path: Path) -> None:
    result = runstream("sync", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == "nothing to sync: no spool found"
