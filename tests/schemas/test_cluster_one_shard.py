"""The whole cluster form, run by the engine: Distributed tables, views through them, inserts.

chDB reads a server configuration (``?config-file=``): with a ``<remote_servers>`` cluster of one
shard on this very engine, its Distributed tables work as on a server, placing and reading rows
through the shard's local tables. What it still lacks is Keeper, so ``as_one_server`` drops the
``ON CLUSTER`` clause and the Replicated prefix; every other word of each statement is run as
``runstream migrate --cluster`` generates it. The same points, written through the user-facing
tables, must read back through every view exactly as on one node migrated from the files.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import chdb
import pytest

from runstream_core.cluster import local_table
from runstream_worker.migrate import load_migrations, plan
from runstream_worker.settings import WorkerSettings
from tests.fixtures.cluster import CLUSTER, all_statements, as_one_server, cluster_plan

ONE_SHARD = f"""<clickhouse>
    <tcp_port>9000</tcp_port>
    <remote_servers>
        <{CLUSTER}><shard><replica><host>localhost</host><port>9000</port></replica></shard></{CLUSTER}>
    </remote_servers>
</clickhouse>
"""
RUNS = """
INSERT INTO {db}.runs (team, project, run_id, name, status, started_at, updated_at)
SELECT ['vision', 'nlp'][1 + number % 2], 'proj', concat('run-', toString(number)), concat('name-', toString(number)),
       if(number % 3 = 0, 'finished', 'running'), toDateTime64('{day}', 3, 'UTC'),
       toDateTime64('{day}', 3, 'UTC') + number
FROM numbers(6)
"""
PARAMS = """
INSERT INTO {db}.params (team, project, run_id, key, value, updated_at)
SELECT ['vision', 'nlp'][1 + number % 2], 'proj', concat('run-', toString(number)), 'lr', toString(number / 10),
       toDateTime64('{day}', 3, 'UTC')
FROM numbers(6)
"""
METRICS = """
INSERT INTO {db}.metrics (team, project, run_id, key, step, ts, value, producer_id, seq)
SETTINGS insert_deduplication_token = 'batch-{batch}'
SELECT ['vision', 'nlp'][1 + run % 2], 'proj', concat('run-', toString(run)), ['loss', 'acc'][1 + k], step,
       toDateTime64('{day}', 3, 'UTC') + step, run * 10 + k + (step % 5) / 4,
       concat('p-', toString(run)), intDiv(step, 100)
FROM (SELECT intDiv(number, 600) AS run, intDiv(number % 600, 300) AS k, number % 300 AS step FROM numbers(3600))
WHERE {where}
"""
# Yesterday: within the raw tables' 30 days, which the cluster form sets (expired rows are dropped).
DAY = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d 00:00:00")
VIEWS = {
    "metric_summary_view": "SELECT * FROM {db}.metric_summary_view ORDER BY run_id, key",
    "run_table": "SELECT * FROM {db}.run_table ORDER BY run_id",
    "metric_buckets": (
        "SELECT team, project, run_id, key, level, bucket, sum(points), sum(sum_value), argMaxMerge(last) "
        "FROM {db}.metric_buckets GROUP BY ALL ORDER BY ALL"
    ),
    "ingested_records": "SELECT producer_id, seq, count() FROM {db}.ingested_records GROUP BY ALL ORDER BY ALL",
}


class Engine:
    def __init__(self, path: Path, config: Path) -> None:
        self.connection = chdb.connect(f"{path}?config-file={config}")
        self.cursor = self.connection.cursor()

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        self.cursor.execute(sql)
        return list(self.cursor.fetchall())


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("one-shard")
    (root / "config.xml").write_text(ONE_SHARD)
    ch = Engine(root / "db", root / "config.xml")
    try:
        # The cluster form in database runstream; one node, as written, in database single.
        ch.run("CREATE DATABASE single")
        ch.run("USE single")
        one_node = plan(WorkerSettings(_env_file=None), load_migrations())  # type: ignore[call-arg]
        for statement in [*one_node.tracking, *(s for _, statements in one_node.steps for s in statements)]:
            ch.run(statement)
        todo = cluster_plan()
        ch.run(as_one_server(todo.create_database))
        ch.run("USE runstream")
        for statement in [*all_statements(todo)][1:] + todo.retention(30):
            ch.run(as_one_server(statement))
        for db in ("single", "runstream"):
            ch.run(RUNS.format(db=db, day=DAY))
            ch.run(PARAMS.format(db=db, day=DAY))
            for batch, where in enumerate(("step >= 150", "step < 150")):
                ch.run(METRICS.format(db=db, batch=batch, where=where, day=DAY))
        yield ch
    finally:
        ch.connection.close()


def test_the_user_facing_names_are_distributed_tables_over_the_local_ones(engine: Engine) -> None:
    engines = dict(engine.run("SELECT name, engine FROM system.tables WHERE database = 'runstream'"))
    single = dict(engine.run("SELECT name, engine FROM system.tables WHERE database = 'single'"))
    tables = sorted(name for name, kind in single.items() if kind.endswith("MergeTree"))
    assert {"metrics", "runs", "run_latest", "schema_migrations"} <= set(tables)
    for table in tables:
        assert engines[table] == "Distributed"
        assert engines[local_table(table)] == single[table]
    for name, kind in single.items():
        if kind == "Null":  # stores nothing, fed by views on each shard: a local table only
            assert engines[local_table(name)] == kind and name not in engines
        elif not kind.endswith("MergeTree"):
            assert engines[name] == kind
    # The raw tables keep 30 days on the local tables (RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS).
    (create,) = engine.run(
        "SELECT create_table_query FROM system.tables WHERE database = 'runstream' AND name = 'metrics_local'"
    )[0]
    assert "TTL toDateTime(ts) + toIntervalDay(30)" in create


def test_rows_written_through_the_distributed_tables_are_on_the_shard(engine: Engine) -> None:
    assert engine.run("SELECT count() FROM runstream.metrics_local") == [(3600,)]
    assert engine.run("SELECT count() FROM runstream.metrics") == [(3600,)]
    # 0006: each point keeps the token of the insert that wrote it, readable through the Distributed table.
    assert engine.run(
        "SELECT insert_token, min(step), max(step), count() FROM runstream.metrics GROUP BY insert_token ORDER BY 1"
    ) == [("batch-0", 150, 299, 1800), ("batch-1", 0, 149, 1800)]


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_every_view_reads_through_the_cluster_as_on_one_node(engine: Engine, view: str) -> None:
    one_node = engine.run(VIEWS[view].format(db="single"))
    assert one_node
    assert engine.run(VIEWS[view].format(db="runstream")) == one_node


def test_the_run_table_shows_each_run_once_with_its_last_values(engine: Engine) -> None:
    rows = engine.run(
        "SELECT run_id, status, params['lr'], last_values['loss'], last_steps['acc'] "
        "FROM runstream.run_table ORDER BY run_id"
    )
    assert rows == [
        (f"run-{n}", "finished" if n % 3 == 0 else "running", str(n / 10) if n % 10 else "0", n * 10 + 4 / 4, 299)
        for n in range(6)
    ]
