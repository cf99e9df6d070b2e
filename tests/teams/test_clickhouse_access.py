"""Team users, grants and row policies: the exact SQL, its acceptance by the engine, and the isolation it gives.

The embedded engine (chDB) cannot enforce users: it has no writable user directory and runs every
query as ``default`` without access management, so a query cannot run *as* ``team_vision`` there.
So these tests check (a) the exact statements, (b) that the engine's own parser accepts each of them
and that discovery runs on it, and (c) the isolation itself, by running every team's row-policy
condition as a WHERE filter over the seeded data of every table and view that is granted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from clickhouse_connect.driver.client import Client

from runstream_core.errors import UsageError
from runstream_grafana.teams import clickhouse_access as access
from runstream_grafana.teams.clickhouse_access import TeamObjects
from tests.fixtures.seed import SeedFacts, SeedRun
from tests.fixtures.settings import StackSettings as Settings

OBJECTS = TeamObjects(tables=("metrics", "runs"), views=("run_table",))


def test_exact_statements_for_a_team() -> None:
    statements = access.team_statements("vision", "s3cr'et", OBJECTS, "runstream")
    assert [s.sql for s in statements] == [
        "CREATE USER IF NOT EXISTS `team_vision` IDENTIFIED WITH sha256_password BY 's3cr\\'et' "
        "DEFAULT DATABASE `runstream` SETTINGS PROFILE 'runstream_team_readonly'",
        "ALTER USER `team_vision` IDENTIFIED WITH sha256_password BY 's3cr\\'et' "
        "DEFAULT DATABASE `runstream` SETTINGS PROFILE 'runstream_team_readonly'",
        "CREATE ROW POLICY OR REPLACE `runstream_team_vision` ON `runstream`.`metrics` "
        "AS RESTRICTIVE FOR SELECT USING team = 'vision' TO `team_vision`",
        "CREATE ROW POLICY OR REPLACE `runstream_team_vision` ON `runstream`.`runs` "
        "AS RESTRICTIVE FOR SELECT USING team = 'vision' TO `team_vision`",
        "GRANT SELECT ON `runstream`.`metrics`, SELECT ON `runstream`.`run_table`, SELECT ON `runstream`.`runs` "
        "TO `team_vision` WITH REPLACE OPTION",
    ]
    # Plans and logs show the statements with the password masked.
    assert statements[0].shown == statements[0].sql.replace("s3cr\\'et", "******")
    assert all("s3cr" not in s.shown for s in statements)


def test_exact_shared_statements() -> None:
    assert [s.sql for s in access.shared_statements(OBJECTS, "runstream")] == [
        "CREATE SETTINGS PROFILE IF NOT EXISTS `runstream_team_readonly` SETTINGS readonly = 2",
        "ALTER SETTINGS PROFILE `runstream_team_readonly` SETTINGS readonly = 2",
        "CREATE ROW POLICY OR REPLACE `runstream_all_rows` ON `runstream`.`metrics` "
        "AS PERMISSIVE FOR SELECT USING 1 TO ALL",
        "CREATE ROW POLICY OR REPLACE `runstream_all_rows` ON `runstream`.`runs` "
        "AS PERMISSIVE FOR SELECT USING 1 TO ALL",
    ]


@pytest.mark.parametrize(
    "name", ["vision' OR 1=1 --", "vision`; DROP USER default", "Vision", "1team", "team-a", "", "a" * 33, "vi\x00"]
)
def test_hostile_or_malformed_team_names_are_rejected(name: str) -> None:
    with pytest.raises(UsageError, match="unsafe team name"):
        access.team_statements(name, "pw", OBJECTS, "runstream")
    with pytest.raises(UsageError, match="unsafe team name"):
        access.team_condition(name)


def test_quoting_escapes_quotes_and_backslashes() -> None:
    assert access.quote_literal("it's \\ fine") == "'it\\'s \\\\ fine'"
    assert access.quote_identifier("odd`name\\") == "`odd\\`name\\\\`"
    with pytest.raises(UsageError):
        access.quote_identifier("")


def test_no_team_tables_means_migrate_first() -> None:
    with pytest.raises(UsageError, match="run `runstream migrate` first"):
        access.team_statements("vision", "pw", TeamObjects((), ()), "runstream")


def test_discovery_finds_every_table_with_a_team_column(client: Client) -> None:
    objects = access.discover(access.ClientSession(client), "runstream")
    assert objects.tables == (
        "alerts",
        "gpu_hours",
        "hardware",
        "hardware_minute",
        "metric_buckets",
        "metric_summary",
        "metrics",
        "params",
        "run_latest",
        "runs",
        "summary",
    )
    assert objects.views == ("metric_summary_view", "run_table")
    # Not granted: tables without a team column, and materialized views (their targets are).
    granted = set(objects.granted)
    assert not granted & {
        "pipeline_health",
        "schema_migrations",
        "ingested_records",
        "metric_summary_mv",
        "alert_state",  # the worker's own bookkeeping
    }


def test_new_tables_with_a_team_column_are_covered(tmp_path_factory: pytest.TempPathFactory) -> None:
    from runstream_core.clickhouse import connect
    from runstream_worker.migrate import migrate

    settings = Settings(clickhouse_url=f"chdb://{tmp_path_factory.mktemp('newtable') / 'ch'}", _env_file=None)  # type: ignore[call-arg]
    migrate(settings)
    client = connect(settings)
    try:
        client.command(
            "CREATE TABLE artifacts (team LowCardinality(String), uri String) ENGINE = MergeTree ORDER BY team"
        )
        client.command("CREATE TABLE notes (text String) ENGINE = MergeTree ORDER BY text")
        client.command(
            "CREATE VIEW definer_view DEFINER = default SQL SECURITY DEFINER AS SELECT team, uri FROM artifacts"
        )
        objects = access.discover(access.ClientSession(client), "runstream")
    finally:
        client.close()
    assert "artifacts" in objects.tables
    assert "notes" not in objects.granted
    # A view running with its definer's rights would skip the invoker's row policies.
    assert objects.skipped_views == ("definer_view",)
    assert "definer_view" not in objects.granted


def test_the_engine_parser_accepts_every_statement(client: Client) -> None:
    objects = access.discover(access.ClientSession(client), "runstream")
    statements = access.shared_statements(objects, "runstream") + access.team_statements(
        "vision", "p'w\\d", objects, "runstream"
    )
    for statement in statements:
        formatted = client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement.sql}).result_rows
        assert formatted[0][0], statement.shown
    # The row filter is one condition on the team column, whatever the name around it.
    echoed = client.query(f"SELECT {access.quote_literal(chr(39) + ' OR 1=1 --')}").result_rows
    assert echoed == [("' OR 1=1 --",)]


def test_users_of_removed_teams_are_dropped_with_their_policies(client: Client) -> None:
    """Removing a team from teams.yaml ends its access on a server at the next sync."""
    objects = TeamObjects(("metrics", "runs"), ("run_table",))
    existing = ["default", "grafana", "team_vision", "team_gone", "team_Not-Ours", "runstream"]
    statements = access.removal_statements(existing, ["vision"], objects, "runstream")
    assert [s.sql for s in statements] == [
        "DROP USER IF EXISTS `team_gone`",
        "DROP ROW POLICY IF EXISTS `runstream_team_gone` ON `runstream`.`metrics`",
        "DROP ROW POLICY IF EXISTS `runstream_team_gone` ON `runstream`.`runs`",
    ]
    for statement in statements:
        formatted = client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement.sql}).result_rows
        assert formatted[0][0], statement.sql
    assert access.removal_statements(["team_vision"], ["vision"], objects, "runstream") == []


def test_embedded_engine_cannot_hold_users(client: Client) -> None:
    """Why isolation is checked through filters here: chDB refuses access management outright."""
    statement = access.team_statements("vision", "pw", TeamObjects(("runs",), ()), "runstream")[0]
    with pytest.raises(Exception, match="ACCESS_DENIED"):
        client.command(statement.sql)
    assert client.query("SELECT currentUser()").result_rows == [("default",)]


# Per granted object: what to measure, and its exact value for one team's runs in the seed.
MEASURES: dict[str, tuple[str, Callable[[SeedFacts, list[SeedRun]], float]]] = {
    "metrics": ("count()", lambda f, runs: len(runs) * 2 * f.steps),
    "hardware": ("count()", lambda f, runs: sum(f.hardware_samples * (2 + 4 * r.gpus) for r in runs)),
    "hardware_minute": ("sum(samples)", lambda f, runs: sum(f.hardware_samples * (2 + 4 * r.gpus) for r in runs)),
    "gpu_hours": (
        "round(sum(gpu_hours), 6)",
        lambda f, runs: sum(r.gpus * f.hardware_samples * f.hardware_interval_ms for r in runs) / 3_600_000,
    ),
    "metric_summary": ("sum(points)", lambda f, runs: len(runs) * 2 * f.steps),
    "metric_summary_view": ("count()", lambda f, runs: len(runs) * 2),
    # Levels 1..4 group 16, 256, 4096 and 65536 steps: 125 + 8 + 1 + 1 buckets per curve of 2,000 steps.
    "metric_buckets": (
        "count(DISTINCT run_id, key, level, bucket)",
        lambda f, runs: len(runs) * 2 * sum(-(-f.steps // 16**level) for level in (1, 2, 3, 4)),
    ),
    "params": ("count(DISTINCT run_id, key)", lambda f, runs: sum(len(r.params) for r in runs)),
    "runs": ("count(DISTINCT run_id)", lambda f, runs: len(runs)),
    "run_latest": ("count(DISTINCT run_id)", lambda f, runs: len(runs)),
    "run_table": ("count()", lambda f, runs: len(runs)),
    "summary": ("count()", lambda f, runs: 0),
    "alerts": ("count()", lambda f, runs: len(runs)),  # one per run
}


def test_each_teams_condition_returns_only_its_own_rows(client: Client, seeded: tuple[Settings, SeedFacts]) -> None:
    facts = seeded[1]
    objects = access.discover(access.ClientSession(client), "runstream")
    assert set(objects.granted) == set(MEASURES)
    assert [len(facts.of_team(t)) for t in facts.teams] == [8, 8, 8]
    for obj in objects.granted:
        measure, expected = MEASURES[obj]
        everyone = client.query(f"SELECT team, {measure} FROM {obj} GROUP BY team ORDER BY team").result_rows
        assert {row[0]: row[1] for row in everyone} == {
            t: expected(facts, facts.of_team(t)) for t in facts.teams if expected(facts, facts.of_team(t))
        }, obj
        for team in facts.teams:
            where = access.team_condition(team)
            seen = client.query(f"SELECT team, {measure} FROM {obj} WHERE {where} GROUP BY team").result_rows
            want = expected(facts, facts.of_team(team))
            # Grouped by team: a row of any other team would show up as its own group.
            assert seen == ([(team, want)] if want else []), (obj, team)


def test_vision_sees_exact_seed_figures(client: Client) -> None:
    """The same isolation, spelled out in numbers for one team."""
    where = access.team_condition("vision")
    assert client.query(f"SELECT count() FROM metrics WHERE {where}").result_rows == [(32_000,)]
    assert client.query(f"SELECT count() FROM hardware WHERE {where}").result_rows == [(7_200,)]
    assert client.query(f"SELECT round(sum(gpu_hours), 6) FROM gpu_hours WHERE {where}").result_rows == [(4.0,)]
    runs = client.query(f"SELECT run_id FROM run_table WHERE {where} ORDER BY run_id").result_rows
    assert [r[0] for r in runs] == [f"vision-0-{i}" for i in range(5)] + [f"vision-1-{i}" for i in range(3)]
    others = client.query(f"SELECT count() FROM metrics WHERE NOT ({where})").result_rows
    assert others == [(64_000,)]


# -- on a cluster (RUNSTREAM_CLICKHOUSE_CLUSTER) -----------------------------------------------------------

# Discovery on a cluster finds each Distributed table and the local table under it: both get policies.
CLUSTER_OBJECTS = TeamObjects(tables=("metrics", "metrics_local", "runs", "runs_local"), views=("run_table",))


def test_exact_statements_on_a_cluster() -> None:
    team = [s.sql for s in access.team_statements("vision", "pw", CLUSTER_OBJECTS, "runstream", "prod-east")]
    account = (
        "`team_vision` ON CLUSTER `prod-east` IDENTIFIED WITH sha256_password BY 'pw' "
        "DEFAULT DATABASE `runstream` SETTINGS PROFILE 'runstream_team_readonly'"
    )
    assert team == [
        f"CREATE USER IF NOT EXISTS {account}",
        f"ALTER USER {account}",
        *(
            f"CREATE ROW POLICY OR REPLACE `runstream_team_vision` ON CLUSTER `prod-east` ON `runstream`.`{table}` "
            "AS RESTRICTIVE FOR SELECT USING team = 'vision' TO `team_vision`"
            for table in CLUSTER_OBJECTS.tables
        ),
        "GRANT ON CLUSTER `prod-east` SELECT ON `runstream`.`metrics`, SELECT ON `runstream`.`metrics_local`, "
        "SELECT ON `runstream`.`run_table`, SELECT ON `runstream`.`runs`, SELECT ON `runstream`.`runs_local` "
        "TO `team_vision` WITH REPLACE OPTION",
    ]
    shared = [s.sql for s in access.shared_statements(CLUSTER_OBJECTS, "runstream", "prod-east")]
    assert shared[:2] == [
        "CREATE SETTINGS PROFILE IF NOT EXISTS `runstream_team_readonly` ON CLUSTER `prod-east` SETTINGS readonly = 2",
        "ALTER SETTINGS PROFILE `runstream_team_readonly` ON CLUSTER `prod-east` SETTINGS readonly = 2",
    ]
    assert shared[2:] == [
        f"CREATE ROW POLICY OR REPLACE `runstream_all_rows` ON CLUSTER `prod-east` ON `runstream`.`{table}` "
        "AS PERMISSIVE FOR SELECT USING 1 TO ALL"
        for table in CLUSTER_OBJECTS.tables
    ]
    removed = [s.sql for s in access.removal_statements(["team_gone"], [], CLUSTER_OBJECTS, "runstream", "prod-east")]
    assert removed == [
        "DROP USER IF EXISTS `team_gone` ON CLUSTER `prod-east`",
        *(
            f"DROP ROW POLICY IF EXISTS `runstream_team_gone` ON `runstream`.`{table}` ON CLUSTER `prod-east`"
            for table in CLUSTER_OBJECTS.tables
        ),
    ]


def test_the_engine_parser_reads_every_cluster_statement_as_running_on_the_cluster(client: Client) -> None:
    """formatQuery parses each statement; the cluster in its formatted text is the one the parser found."""
    statements = [
        *access.shared_statements(CLUSTER_OBJECTS, "runstream", "prod-east"),
        *access.team_statements("vision", "p'w\\d", CLUSTER_OBJECTS, "runstream", "prod-east"),
        *access.removal_statements(["team_gone"], ["vision"], CLUSTER_OBJECTS, "runstream", "prod-east"),
    ]
    assert len(statements) == 2 + 4 + 2 + 4 + 1 + 1 + 4
    for statement in statements:
        formatted = client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement.sql}).result_rows
        assert formatted[0][0].count(" ON CLUSTER `prod-east`") == 1, statement.shown
        # The same statement without the clause formats to the same text without it: nothing else moved.
        one_node = statement.sql.replace(" ON CLUSTER `prod-east`", "")
        plain = client.query("SELECT formatQuery({sql:String})", parameters={"sql": one_node}).result_rows
        assert formatted[0][0].replace(" ON CLUSTER `prod-east`", "") == plain[0][0]


@pytest.mark.parametrize("cluster", ["x; DROP USER default", "prod`east", "it's", "a b", "prod.east", "9x"])
def test_hostile_cluster_names_are_refused_in_team_statements(cluster: str) -> None:
    with pytest.raises(UsageError, match="unsafe cluster name"):
        access.shared_statements(CLUSTER_OBJECTS, "runstream", cluster)
    with pytest.raises(UsageError, match="unsafe cluster name"):
        access.team_statements("vision", "pw", CLUSTER_OBJECTS, "runstream", cluster)
    with pytest.raises(UsageError, match="unsafe cluster name"):
        access.removal_statements(["team_gone"], [], CLUSTER_OBJECTS, "runstream", cluster)
