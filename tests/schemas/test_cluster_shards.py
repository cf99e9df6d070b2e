"""Each shard runs the cluster form of the migrations, and rollups computed per shard add up.

chDB has no Keeper and no ``<remote_servers>``, so two databases stand for the two shards of the
compose profile: each runs every statement of the cluster form that a shard holds (the local
tables and the materialized views on them, via ``as_one_server``). Rows are placed as the
Distributed tables place them (the run's hash modulo the shard count) and read back across both
shards with ``merge()``, as a Distributed table reads them. The figures must equal those of the
same rows on one node: a run's rows all on one shard keep its rollups complete.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_core.cluster import RUN_SHARDING_KEY
from runstream_worker.migrate import migrate
from tests.fixtures.cluster import all_statements, as_one_server, cluster_plan
from tests.fixtures.settings import StackSettings as Settings

SHARDS = ("shard_01", "shard_02")
# 12 runs of 2 teams, 3 metrics each, 500 steps: values that differ per run, key and step, in
# quarters so that sums are exact whatever order the shards add them in.
POINTS = """
SELECT ['vision', 'nlp'][1 + run % 2] AS team, 'proj' AS project, concat('run-', toString(run)) AS run_id,
       ['loss', 'acc', 'lr'][1 + k] AS key, step, toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + step AS ts,
       (run + 1) * 1000 + k * 100 + (step % 7) / 4 AS value, concat('p-', toString(run)) AS producer_id, step AS seq
FROM (SELECT intDiv(number, 1500) AS run, intDiv(number % 1500, 500) AS k, number % 500 AS step
      FROM numbers(12 * 1500))
"""
COLUMNS = "(team, project, run_id, key, step, ts, value, producer_id, seq)"
# Two batches per run, in the order a worker might write them: the second half first.
BATCHES = ("step >= 250", "step < 250")
SUMMARY = """
SELECT team, project, run_id, key, sum(points), min(min_value), max(max_value), max(last_step),
       argMaxMerge(last), min(first_ts), max(last_ts)
FROM {source} GROUP BY team, project, run_id, key ORDER BY team, project, run_id, key
"""
BUCKETS = """
SELECT team, project, run_id, key, level, bucket, sum(points), sum(sum_value), min(min_value), max(max_value),
       argMaxMerge(last), max(last_step)
FROM {source} GROUP BY team, project, run_id, key, level, bucket
ORDER BY team, project, run_id, key, level, bucket
"""


def shard_statements() -> list[str]:
    """What one shard holds: every statement of the cluster form but the Distributed tables, the
    plain views and inserts (which read or write through them) and the database."""
    kept = []
    for statement in all_statements(cluster_plan()):
        if re.match(r"CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS `\w+` ON CLUSTER", statement):
            if "ENGINE = Distributed(" not in statement:
                kept.append(as_one_server(statement))
        elif re.match(r"ALTER TABLE `\w+_local` ON CLUSTER", statement):
            kept.append(as_one_server(statement))
    return kept


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(clickhouse_url=f"chdb://{tmp_path_factory.mktemp('shards') / 'ch'}", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[Client]:
    """One node (database runstream, migrated as written) and two shards, holding the same rows."""
    migrate(settings)
    for shard in SHARDS:
        setup = connect(settings.model_copy(update={"clickhouse_database": shard}), with_database=False)
        try:
            setup.command(f"CREATE DATABASE IF NOT EXISTS {shard}")
        finally:
            setup.close()
        on_shard = connect(settings.model_copy(update={"clickhouse_database": shard}))
        try:
            for statement in shard_statements():
                on_shard.command(statement)
        finally:
            on_shard.close()
    ch = connect(settings)
    try:
        for batch in BATCHES:
            ch.command(f"INSERT INTO runstream.metrics {COLUMNS} SELECT * FROM ({POINTS}) WHERE {batch}")
            for index, shard in enumerate(SHARDS):
                placed = f"{RUN_SHARDING_KEY} % {len(SHARDS)} = {index}"
                ch.command(
                    f"INSERT INTO {shard}.metrics_local {COLUMNS} SELECT * FROM ({POINTS}) WHERE {batch} AND {placed}",
                    settings={"insert_deduplication_token": f"{shard}-{batch}"},
                )
        yield ch
    finally:
        ch.close()


def test_a_shard_holds_local_tables_and_views_on_them(client: Client) -> None:
    one_node = client.query("SELECT name, engine FROM system.tables WHERE database = 'runstream'").result_rows
    shard = dict(client.query("SELECT name, engine FROM system.tables WHERE database = 'shard_01'").result_rows)
    tables = {name for name, engine in one_node if engine.endswith("MergeTree") or engine == "Null"}
    mvs = {name for name, engine in one_node if engine == "MaterializedView"}
    assert set(shard) == {f"{t}_local" for t in tables} | mvs
    for name, engine in one_node:
        if name in tables:
            assert shard[f"{name}_local"] == engine


def test_every_run_is_on_one_shard_and_both_shards_hold_runs(client: Client) -> None:
    rows = client.query(
        "SELECT _database, run_id, count() FROM merge(REGEXP('^shard_0'), '^metrics_local$') "
        "GROUP BY _database, run_id ORDER BY run_id"
    ).result_rows
    assert len(rows) == 12 and len({run for _, run, _ in rows}) == 12
    assert all(points == 1500 for _, _, points in rows)
    assert {database for database, _, _ in rows} == set(SHARDS)


@pytest.mark.parametrize(("query", "table"), [(SUMMARY, "metric_summary"), (BUCKETS, "metric_buckets")])
def test_rollups_read_across_shards_equal_those_of_one_node(client: Client, query: str, table: str) -> None:
    one_node = client.query(query.format(source=f"runstream.{table}")).result_rows
    sharded = client.query(query.format(source=f"merge(REGEXP('^shard_0'), '^{table}_local$')")).result_rows
    # 36 series; buckets: levels 0 and 1 (16 and 256 steps) fill 32 and 2 buckets, 2 and 3 one each.
    assert len(one_node) == 36 * (1 if table == "metric_summary" else 32 + 2 + 1 + 1)
    assert sharded == one_node


def test_run_latest_per_shard_is_complete_for_its_runs(client: Client) -> None:
    """What run_table reads FINAL through the Distributed table: each shard's FINAL, put together.
    run_latest is chained on metric_summary: on a shard, its view reads metric_summary_local."""
    query = "SELECT team, project, run_id, metrics FROM {source} FINAL ORDER BY run_id"
    one_node = client.query(query.format(source="runstream.run_latest")).result_rows
    sharded = sorted(
        row for shard in SHARDS for row in client.query(query.format(source=f"{shard}.run_latest_local")).result_rows
    )
    assert len(one_node) == 12 and sharded == sorted(one_node)
    assert all(sorted(metrics) == ["acc", "loss", "lr"] for *_, metrics in one_node)
    assert all(step == 499 for *_, metrics in one_node for step, _, _ in metrics.values())


def test_a_shard_stores_the_token_each_point_was_inserted_with(client: Client) -> None:
    """0006 on a shard: the worker's repair reads the token back (through the Distributed table)."""
    rows = client.query(
        "SELECT _database, insert_token, min(step), max(step), uniqExact(run_id) "
        "FROM merge(REGEXP('^shard_0'), '^metrics_local$') "
        "GROUP BY _database, insert_token ORDER BY _database, insert_token"
    ).result_rows
    assert [(database, token, low, high) for database, token, low, high, _ in rows] == [
        (shard, f"{shard}-{batch}", low, high)
        for shard in SHARDS
        for batch, low, high in sorted([(BATCHES[1], 0, 249), (BATCHES[0], 250, 499)])
    ]
    assert sum(runs for *_, runs in rows) == 2 * 12
