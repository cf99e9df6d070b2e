"""The cluster form of every migration, read by the engine's own parser.

``runstream migrate --cluster`` translates the statements written for one node (``cluster_ddl.py``).
Each generated statement is parsed by ClickHouse (chDB's ``formatQuery`` and ``EXPLAIN AST``) and
compared with the one-node schema the same migrations build: every table there becomes a replicated
local table and a Distributed table of the same name sharded by run, every view keeps reading what it
read, on the local tables for materialized views. A migration added later is covered because these
tests walk the migrations directory, and one without a cluster form fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from runstream_core.clickhouse import connect
from runstream_core.cluster import RUN_SHARDING_KEY, RUNLESS_SHARDING_KEYS, check_cluster_name, local_table
from runstream_core.cluster_ddl import ClusterSchema, on_cluster
from runstream_core.errors import UsageError
from runstream_worker.migrate import Migration, MigrationError, load_migrations, migrate, plan
from runstream_worker.migration_plan import MigrationPlan
from runstream_worker.settings import WorkerSettings
from tests.fixtures.cluster import CLUSTER, all_statements, cluster_plan, cluster_settings, formatted, table_identifiers
from tests.fixtures.settings import StackSettings as Settings

REPLICATED = re.compile(
    r"ENGINE = Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', '\{replica\}'"
)
HOSTILE_NAMES = [
    "x; DROP TABLE runs",
    "prod`; DROP TABLE runs; --",
    "it's",
    'say"what',
    "two words",
    "line\nbreak",
    "tab\there",
    "",
    "9lives",
    "a" * 65,
    "{cluster}",
    "prod.east",
    "ünïcode",
    "nul\x00",
    "back\\slash",
]


@dataclass
class OneNode:
    """The schema the migrations build on one node, as the engine reports it."""

    engines: dict[str, str] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    statements: dict[str, str] = field(default_factory=dict)
    """The one-node statement that created each table or view, by name."""

    def of(self, engine: str) -> list[str]:
        return sorted(name for name, kind in self.engines.items() if kind == engine)

    @property
    def tables(self) -> list[str]:
        return sorted(name for name, kind in self.engines.items() if kind.endswith("MergeTree"))


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> OneNode:
    settings = Settings(clickhouse_url=f"chdb://{tmp_path_factory.mktemp('one') / 'ch'}", _env_file=None)  # type: ignore[call-arg]
    migrate(settings)
    node = OneNode()
    client = connect(settings)
    try:
        for name, engine in client.query(
            "SELECT name, engine FROM system.tables WHERE database = 'runstream'"
        ).result_rows:
            node.engines[name] = engine
        for table, column in client.query(
            "SELECT table, name FROM system.columns WHERE database = 'runstream' ORDER BY table, position"
        ).result_rows:
            node.columns.setdefault(table, []).append(column)
    finally:
        client.close()
    for _, statements in plan(settings).steps:
        for statement in statements:
            created = re.match(r"CREATE (?:MATERIALIZED VIEW|VIEW|TABLE) IF NOT EXISTS (\w+)", statement)
            if created:
                node.statements[created[1]] = statement
    return node


@pytest.fixture
def client(chdb_settings: Settings) -> Iterator[Client]:
    """A client of an empty embedded engine: only its parser is used."""
    client = connect(chdb_settings, with_database=False)
    yield client
    client.close()


def created(client: Client, statements: list[str]) -> dict[str, str]:
    """The formatted CREATE statement of each object, by name."""
    found = {}
    for statement in statements:
        text = formatted(client, statement)
        name = re.match(r"CREATE (?:MATERIALIZED VIEW|VIEW|TABLE) IF NOT EXISTS (\w+)", text)
        if name:
            found[name[1]] = text
    return found


def test_every_statement_is_parsed_by_the_engine(client: Client) -> None:
    todo = cluster_plan()
    statements = [*all_statements(todo), *todo.retention(30)]
    one_node = sum(len(m.statements()) for m in load_migrations())
    assert len(statements) > one_node  # a table is two, a column change is two
    for statement in statements:
        assert formatted(client, statement), statement


def test_every_ddl_statement_runs_on_every_server_and_inserts_go_through_distributed_tables(client: Client) -> None:
    todo = cluster_plan()
    inserts = []
    for statement in [*all_statements(todo), *todo.retention(30)]:
        text = formatted(client, statement)
        if text.startswith("INSERT INTO"):
            assert " ON CLUSTER " not in text
            inserts.append(text)
            continue
        # The clause follows the object's name, which follows the verb and its keywords.
        assert re.match(r"^(CREATE|ALTER|DROP)( [A-Z]+)+ \w+ ON CLUSTER runstream(\s|$)", text), text
    one_node = [formatted(client, s) for _, ss in plan(WorkerSettings(_env_file=None)).steps for s in ss]  # type: ignore[call-arg]
    # 0005's backfill, unchanged: the Distributed tables place its rows by run.
    assert inserts == [text for text in one_node if text.startswith("INSERT INTO")]
    assert len(inserts) >= 3


def test_every_table_is_a_replicated_local_table_under_a_distributed_table_of_its_name(
    one_node: OneNode, client: Client
) -> None:
    todo = cluster_plan()
    creates = created(client, list(all_statements(todo)))
    tables = one_node.tables
    assert {"runs", "metrics", "hardware", "metric_summary", "run_latest", "schema_migrations"} <= set(tables)
    views = one_node.of("View") + one_node.of("MaterializedView")
    # A Null table (it stores nothing; views are chained on it) exists on each shard only.
    null_tables = set(one_node.of("Null"))
    assert null_tables == {"metric_fine"}
    tables = [*tables, *null_tables]
    assert sorted(creates) == sorted([*(set(tables) - null_tables), *map(local_table, tables), *views])
    for table in tables:
        if table in null_tables:
            create = creates[local_table(table)]
            assert create.startswith(f"CREATE TABLE IF NOT EXISTS {local_table(table)} ON CLUSTER runstream")
            assert re.search(r"ENGINE = `?Null`?$", create.rstrip()), create
            continue
        engine = REPLICATED.search(creates[local_table(table)])
        assert engine is not None, creates[local_table(table)]
        assert engine[1] == one_node.engines[table]
        key = RUN_SHARDING_KEY if {"team", "project", "run_id"} <= set(one_node.columns[table]) else None
        key = key or RUNLESS_SHARDING_KEYS[table]
        assert creates[table] == (
            f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER runstream AS {local_table(table)}\n"
            f"ENGINE = Distributed('runstream', 'runstream', '{local_table(table)}', {key})"
        )


def test_every_table_with_a_run_is_sharded_by_run(one_node: OneNode) -> None:
    keys = cluster_plan().cluster.tables  # type: ignore[union-attr]
    by_run = {table for table, key in keys.items() if key == "cityHash64(team, project, run_id)"}
    assert by_run >= {
        "runs",
        "params",
        "summary",
        "metrics",
        "hardware",
        "metric_summary",
        "metric_buckets",
        "hardware_minute",
        "run_latest",
    }
    # The others have no run, and each names its key (with why) in RUNLESS_SHARDING_KEYS.
    for table in set(keys) - by_run:
        assert not {"team", "project", "run_id"} <= set(one_node.columns[table])
        assert keys[table] == RUNLESS_SHARDING_KEYS[table]


def test_replicated_tables_keep_the_deduplication_window_the_worker_relies_on(
    one_node: OneNode, client: Client
) -> None:
    creates = created(client, list(all_statements(cluster_plan())))
    windows = [
        t for t in one_node.tables if "non_replicated_deduplication_window = 10000" in one_node.statements.get(t, "")
    ]
    assert {"metrics", "hardware", "metric_summary", "metric_buckets", "run_latest"} <= set(windows)
    for table in one_node.tables:
        local = creates[local_table(table)]
        assert "non_replicated" not in local
        assert ("SETTINGS replicated_deduplication_window = 10000" in local) == (table in windows)


def test_materialized_views_read_and_write_the_local_tables_of_their_shard(one_node: OneNode, client: Client) -> None:
    creates = created(client, list(all_statements(cluster_plan())))
    views = one_node.of("MaterializedView")
    assert {"metric_summary_mv", "metric_buckets_mv", "run_latest_metrics_mv", "gpu_hours_mv"} <= set(views)
    for view in views:
        original = formatted(client, one_node.statements[view])
        sources = table_identifiers(client, original)
        assert sources and all(not s.endswith("_local") for s in sources)
        assert table_identifiers(client, creates[view]) == [local_table(s) for s in sources], view
        target = re.search(r" TO (\w+)\n", original)
        assert target is not None
        assert f" TO {local_table(target[1])}\n" in creates[view]


def test_plain_views_read_the_distributed_tables(one_node: OneNode, client: Client) -> None:
    creates = created(client, list(all_statements(cluster_plan())))
    views = one_node.of("View")
    assert {"metric_summary_view", "run_table"} <= set(views)
    distributed = {name for name, text in creates.items() if "ENGINE = Distributed(" in text}
    for view in views:
        reads = table_identifiers(client, creates[view])
        assert reads == table_identifiers(client, one_node.statements[view])
        assert reads and set(reads) <= distributed
    # run_table reads FINAL through the Distributed table: each shard merges its own runs, which are all of them.
    assert "FROM run_latest\nFINAL" in creates["run_table"]


def test_column_changes_follow_on_the_distributed_tables_and_indexes_stay_local(client: Client) -> None:
    todo = cluster_plan()
    alters = [formatted(client, s) for _, ss in todo.steps for s in ss if s.startswith("ALTER")]
    indexes = [a for a in alters if "ADD INDEX" in a]
    assert indexes == [
        "ALTER TABLE metrics_local ON CLUSTER runstream\n"
        "    (ADD INDEX IF NOT EXISTS idx_seq seq TYPE minmax GRANULARITY 1)",
        "ALTER TABLE metrics_local ON CLUSTER runstream\n"
        "    (ADD INDEX IF NOT EXISTS idx_insert_token insert_token TYPE set(64) GRANULARITY 1)",
        "ALTER TABLE hardware_local ON CLUSTER runstream\n"
        "    (ADD INDEX IF NOT EXISTS idx_insert_token insert_token TYPE set(64) GRANULARITY 1)",
        # 0008 replaces the token's index by one on its hash (cheaper to build on every insert).
        "ALTER TABLE metrics_local ON CLUSTER runstream\n"
        "    (ADD INDEX IF NOT EXISTS idx_insert_token_hash cityHash64(insert_token) TYPE set(64) GRANULARITY 1)",
        "ALTER TABLE hardware_local ON CLUSTER runstream\n"
        "    (ADD INDEX IF NOT EXISTS idx_insert_token_hash cityHash64(insert_token) TYPE set(64) GRANULARITY 1)",
    ]
    columns = [a for a in alters if "ADD COLUMN" in a]
    assert len(columns) >= 12  # 0002 and 0003 add 6 columns, each on the local and the Distributed table
    for local, distributed in zip(columns[::2], columns[1::2], strict=True):
        table = re.match(r"ALTER TABLE (\w+)_local ON CLUSTER", local)
        assert table is not None
        assert distributed == local.replace(f"{table[1]}_local ON", f"{table[1]} ON", 1)


def test_the_insert_token_column_is_on_the_local_and_the_distributed_tables(client: Client) -> None:
    """0006: the token is read back through the Distributed table (the worker's repair), and an insert
    through it carries its deduplication token to the shard, where the local column stores it."""
    (migration, statements) = cluster_plan().steps[5]
    assert migration.label == "0006_insert_tokens"
    texts = [formatted(client, s) for s in statements]
    column = (
        "(ADD COLUMN IF NOT EXISTS `insert_token` LowCardinality(String) "
        "MATERIALIZED getSetting('insert_deduplication_token'))"
    )
    index = "(ADD INDEX IF NOT EXISTS idx_insert_token insert_token TYPE set(64) GRANULARITY 1)"
    assert texts == [
        f"ALTER TABLE {table} ON CLUSTER runstream\n    {command}"
        for raw in ("metrics", "hardware")
        for table, command in ((f"{raw}_local", column), (raw, column), (f"{raw}_local", index))
    ]


def test_raw_retention_changes_the_local_tables_on_every_shard(client: Client) -> None:
    statements = [formatted(client, s) for s in cluster_plan().retention(30)]
    assert statements == [
        "ALTER TABLE metrics_local ON CLUSTER runstream\n    (MODIFY TTL toDateTime(ts) + toIntervalDay(30))",
        "ALTER TABLE metrics_local ON CLUSTER runstream\n    (MODIFY SETTING ttl_only_drop_parts = 1)",
        "ALTER TABLE hardware_local ON CLUSTER runstream\n    (MODIFY TTL toDateTime(ts) + toIntervalDay(30))",
        "ALTER TABLE hardware_local ON CLUSTER runstream\n    (MODIFY SETTING ttl_only_drop_parts = 1)",
    ]


def test_the_one_node_plan_is_the_migration_files_as_written() -> None:
    one = plan(WorkerSettings(_env_file=None))  # type: ignore[call-arg]
    assert one.cluster is None
    assert [list(statements) for _, statements in one.steps] == [m.statements() for m in load_migrations()]
    assert one.create_database == "CREATE DATABASE IF NOT EXISTS `runstream`"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_cluster_names_are_refused_everywhere(name: str) -> None:
    with pytest.raises(UsageError, match="unsafe cluster name"):
        check_cluster_name(name)
    with pytest.raises(UsageError, match="unsafe cluster name"):
        ClusterSchema(name, "runstream")
    with pytest.raises(UsageError, match="unsafe cluster name"):
        on_cluster(name)
    if name:  # an empty setting means one server
        with pytest.raises(ValidationError, match="unsafe cluster name"):
            cluster_settings(cluster=name)


@pytest.mark.parametrize("name", ["prod-east_2", "_x", "A"])
def test_valid_names_are_quoted_by_the_quoting_helper(name: str, client: Client) -> None:
    todo = cluster_plan(cluster=name, database="metrics_db")
    assert todo.create_database == f"CREATE DATABASE IF NOT EXISTS `metrics_db` ON CLUSTER `{name}`"
    distributed = next(s for _, ss in todo.steps for s in ss if "Distributed(" in s)
    assert f"Distributed('{name}', 'metrics_db', " in distributed
    for statement in all_statements(todo):
        assert formatted(client, statement)


# -- migrations added later ---------------------------------------------------------------------------

LATER_TABLE = """
CREATE TABLE IF NOT EXISTS run_notes
(
    team        LowCardinality(String),
    project     LowCardinality(String),
    run_id      String,
    note        String,
    noted_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(noted_at)
ORDER BY (team, project, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS run_notes_mv TO run_notes AS
SELECT team, project, run_id, concat('ended ', status) AS note, updated_at AS noted_at
FROM runs
WHERE status != 'running';

ALTER TABLE run_notes ADD COLUMN IF NOT EXISTS author String DEFAULT '',
    ADD INDEX IF NOT EXISTS idx_note note TYPE bloom_filter GRANULARITY 4;
"""


def test_a_later_migration_gets_its_cluster_form(client: Client) -> None:
    todo = cluster_plan_with(Migration(99, "run_notes", LATER_TABLE))
    (migration, statements) = todo.steps[-1]
    assert migration.label == "0099_run_notes"
    texts = [formatted(client, s) for s in statements]
    assert len(texts) == 5
    assert REPLICATED.search(texts[0]) and texts[0].startswith("CREATE TABLE IF NOT EXISTS run_notes_local ON CLUSTER")
    assert texts[1].endswith(
        "ENGINE = Distributed('runstream', 'runstream', 'run_notes_local', " + RUN_SHARDING_KEY + ")"
    )
    assert table_identifiers(client, texts[2]) == ["runs_local"] and " TO run_notes_local\n" in texts[2]
    assert "ADD INDEX" in texts[3] and texts[3].startswith("ALTER TABLE run_notes_local ON CLUSTER")
    assert "ADD INDEX" not in texts[4] and texts[4].startswith("ALTER TABLE run_notes ON CLUSTER")


def cluster_plan_with(*extra: Migration) -> MigrationPlan:
    return plan(cluster_settings(), [*load_migrations(), *extra])


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE TABLE IF NOT EXISTS insert_tokens (token String, seen_at DateTime) "
            "ENGINE = ReplacingMergeTree ORDER BY token;",
            r"0099_later has no cluster form: table insert_tokens has no run .* RUNLESS_SHARDING_KEYS",
        ),
        (
            "CREATE TABLE IF NOT EXISTS scratch (team String, project String, run_id String) ENGINE = Log;",
            "engine Log has no replicated form",
        ),
        (
            "CREATE TABLE IF NOT EXISTS other.notes (team String) ENGINE = MergeTree ORDER BY team;",
            "without a database",
        ),
        ("CREATE TABLE IF NOT EXISTS copy AS runs;", "list its columns"),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS inner_mv ENGINE = MergeTree ORDER BY team "
            "AS SELECT team FROM runs;",
            "must write TO a table of the migrations",
        ),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS odd_mv TO run_latest "
            "AS SELECT team, project, run_id FROM run_table;",
            "reads run_table, which is not a table of the migrations",
        ),
        ("ALTER TABLE run_table MODIFY QUERY SELECT 1;", "only tables created by the migrations"),
        ("RENAME TABLE runs TO runs_old;", "no cluster form for a statement starting 'RENAME TABLE RUNS'"),
        (
            "CREATE OR REPLACE TABLE scratch (team String, project String, run_id String) "
            "ENGINE = MergeTree ORDER BY team;",
            "no cluster form for a statement starting 'CREATE OR REPLACE'",
        ),
        ("OPTIMIZE TABLE metrics FINAL;", "no cluster form for a statement starting 'OPTIMIZE TABLE METRICS'"),
        (
            "CREATE DICTIONARY d (k UInt64) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0);",
            "CREATE DICTIONARY",
        ),
        ("CREATE TABLE IF NOT EXISTS runs (team String) ENGINE = MergeTree ORDER BY team;", "created twice"),
    ],
)
def test_a_later_migration_without_a_cluster_form_fails_loudly(sql: str, message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        cluster_plan_with(Migration(99, "later", sql))
    # The same migration on one node is applied as written (or refused by the engine, not here).
    assert plan(WorkerSettings(_env_file=None), [*load_migrations(), Migration(99, "later", sql)])  # type: ignore[call-arg]


TRICKY_VIEW = """
CREATE MATERIALIZED VIEW IF NOT EXISTS tricky_mv TO metric_summary AS
SELECT m.team AS team, m.project AS project, m.run_id AS run_id, 'FROM metrics JOIN runs' AS key, /* FROM params */
       count() AS points, min(extract(DAY FROM runs)) AS min_value, max(`metrics`.value) AS max_value
FROM `metrics` AS m
INNER JOIN (SELECT team, project, run_id FROM runs FINAL WHERE name != 'FROM summary') AS r
    USING (team, project, run_id)
LEFT ARRAY JOIN [1, 2] AS params
WHERE m.key IN (SELECT key FROM params WHERE value = '\\' FROM hardware') AND trim(BOTH ' ' FROM m.key) != ''
GROUP BY team, project, run_id, key
"""


def test_only_the_tables_a_view_reads_are_renamed(client: Client) -> None:
    """Table names in string literals, comments, aliases, ARRAY JOIN and EXTRACT/trim's FROM stay as they are."""
    schema = ClusterSchema(CLUSTER, "runstream")
    for _, statements in plan(WorkerSettings(_env_file=None), load_migrations()).steps:  # type: ignore[call-arg]
        for statement in statements:
            schema.translate(statement)
    (translated,) = schema.translate(TRICKY_VIEW.strip())
    assert table_identifiers(client, TRICKY_VIEW) == ["metrics", "runs", "params"]
    assert table_identifiers(client, translated) == ["metrics_local", "runs_local", "params_local"]
    for kept in (
        "'FROM metrics JOIN runs'",
        "/* FROM params */",
        "extract(DAY FROM runs)",
        "AS params",
        "'FROM summary'",
    ):
        assert kept in translated
    assert translated.count("_local") == 4  # the three tables read and the target
    assert formatted(client, translated)
