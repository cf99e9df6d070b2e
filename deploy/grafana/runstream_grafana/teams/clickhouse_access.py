"""ClickHouse side of team isolation: a read-only user per team whose reads are cut down by row policies.

Every table with a ``team`` column (found in ``system.columns``, so tables added by later migrations
are covered on the next sync) gets two row policies:

* ``runstream_team_<name>``, RESTRICTIVE, ``USING team = '<name>'``, for user ``team_<name>``.
  Restrictive policies are ANDed with every other policy, so nothing can widen what a team sees;
* ``runstream_all_rows``, PERMISSIVE, ``USING 1`` for ALL users, so that users without a team
  policy (the worker, the main organization's ``grafana`` user) keep reading every row whatever the
  server's ``users_without_row_policies_can_read_rows`` is, and team users pass the permissive step.

Team users get the ``runstream_team_readonly`` profile (``readonly = 2``: they cannot write or lower
``readonly``, but may set query settings, which the Grafana plugin needs) and ``SELECT`` on exactly
those tables plus the plain views that have a ``team`` column: a view runs with its invoker's rights
(SQL SECURITY INVOKER, ClickHouse's default), so the row policies of the tables below it apply. Views
declared ``SQL SECURITY DEFINER`` or ``NONE`` would read with someone else's rights and are skipped,
as are materialized views (their target tables are granted instead) and every table without a team
column (pipeline_health, schema_migrations, ingested_records).

On a cluster (``RUNSTREAM_CLICKHOUSE_CLUSTER``) every statement runs ``ON CLUSTER``, so each server
holds the same users, policies and grants. The tables found then include both the Distributed
tables and the local tables under them, and each gets the policies: a query through a Distributed
table runs on every shard as the user who sent it (the cluster's inter-server ``<secret>``), where the
local table's policy cuts its rows before any partial aggregate leaves the shard (docs/scaling.md).

Platform admins get no ClickHouse user from here: they work in Grafana's main organization, whose
datasource uses the stack's ``grafana`` user (deploy/clickhouse/users.d/grafana.xml: read-only, no
team policy, so ``runstream_all_rows`` lets it read every team's rows).

The embedded engine (chDB) cannot hold users: its only user directory is a read-only ``users.xml``,
its session always runs as ``default`` (which lacks access management), and impersonation is off, so
``CREATE USER`` and ``CREATE ROW POLICY`` are refused there. For a ``chdb://`` store the same rule
(``team_access``) is enforced by the endpoint that serves the store instead (``endpoint/``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver import binding
from clickhouse_connect.driver.client import Client

from runstream_core.cluster_ddl import on_cluster
from runstream_core.errors import UsageError
from runstream_core.team_access import (
    TEAM_COLUMN,
    TEAM_USER_PREFIX,
    SqlSession,
    TeamObjects,
    check_team_name,
    discover,
    team_condition,
    team_user,
)

__all__ = [
    "TEAM_COLUMN",
    "SqlSession",
    "TeamObjects",
    "check_team_name",
    "discover",
    "team_condition",
    "team_user",
]

TEAM_PROFILE = "runstream_team_readonly"
ALL_ROWS_POLICY = "runstream_all_rows"


class ClientSession:
    """:class:`SqlSession` over a clickhouse-connect client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        return self.client.query(sql, parameters=dict(parameters or {})).result_rows

    def execute(self, sql: str) -> None:
        self.client.command(sql)


@dataclass(frozen=True)
class Statement:
    sql: str
    shown: str
    """``sql`` with the password masked: what plans and logs print."""

    @classmethod
    def plain(cls, sql: str) -> Statement:
        return cls(sql, sql)


def quote_identifier(name: str) -> str:
    if not name or "\x00" in name:
        raise UsageError(f"invalid ClickHouse identifier {name!r}")
    return str(binding.quote_identifier(name))


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise UsageError("a ClickHouse string literal cannot contain NUL")
    return str(binding.format_str(value))


def team_policy(team: str) -> str:
    return f"runstream_team_{check_team_name(team)}"


def _on(database: str, table: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}"


def _cluster(cluster: str) -> str:
    """`` ON CLUSTER name`` where the statement goes to every server of ``cluster``; nothing on one server."""
    return f" {on_cluster(cluster)}" if cluster else ""


def shared_statements(objects: TeamObjects, database: str, cluster: str = "") -> list[Statement]:
    """The team profile and, on every team table, the pass-through policy for everyone else."""
    profile = quote_identifier(TEAM_PROFILE)
    everywhere = _cluster(cluster)
    statements = [
        Statement.plain(f"CREATE SETTINGS PROFILE IF NOT EXISTS {profile}{everywhere} SETTINGS readonly = 2"),
        Statement.plain(f"ALTER SETTINGS PROFILE {profile}{everywhere} SETTINGS readonly = 2"),
    ]
    statements += [
        Statement.plain(
            f"CREATE ROW POLICY OR REPLACE {quote_identifier(ALL_ROWS_POLICY)}{everywhere} ON {_on(database, table)} "
            "AS PERMISSIVE FOR SELECT USING 1 TO ALL"
        )
        for table in objects.tables
    ]
    return statements


def team_statements(
    team: str, password: str, objects: TeamObjects, database: str, cluster: str = ""
) -> list[Statement]:
    """User, row policies, then grants (so a new user never reads a table before its policy exists)."""
    if not objects.tables:
        raise UsageError(f"no table with a team column in database {database!r}: run `runstream migrate` first")
    if not password:
        raise UsageError(f"empty ClickHouse password for team {team!r}")
    user = quote_identifier(team_user(team))
    everywhere = _cluster(cluster)

    def account(verb: str, secret: str) -> str:
        return (
            f"{verb} {user}{everywhere} IDENTIFIED WITH sha256_password BY {quote_literal(secret)} "
            f"DEFAULT DATABASE {quote_identifier(database)} SETTINGS PROFILE {quote_literal(TEAM_PROFILE)}"
        )

    # CREATE ... IF NOT EXISTS leaves an existing user alone; ALTER then sets the current password.
    statements = [
        Statement(account(verb, password), account(verb, "******"))
        for verb in ("CREATE USER IF NOT EXISTS", "ALTER USER")
    ]
    statements += [
        Statement.plain(
            f"CREATE ROW POLICY OR REPLACE {quote_identifier(team_policy(team))}{everywhere} "
            f"ON {_on(database, table)} AS RESTRICTIVE FOR SELECT USING {team_condition(team)} TO {user}"
        )
        for table in objects.tables
    ]
    grants = ", ".join(f"SELECT ON {_on(database, name)}" for name in objects.granted)
    # REPLACE OPTION drops grants on objects that no longer qualify.
    statements.append(Statement.plain(f"GRANT{everywhere} {grants} TO {user} WITH REPLACE OPTION"))
    return statements


def removal_statements(
    existing_users: Sequence[str], teams: Sequence[str], objects: TeamObjects, database: str, cluster: str = ""
) -> list[Statement]:
    """DROP the users (and their row policies) of teams that are no longer configured."""
    keep = {team_user(team) for team in teams}
    everywhere = _cluster(cluster)
    statements = []
    for user in existing_users:
        if not user.startswith(TEAM_USER_PREFIX) or user in keep:
            continue
        team = user.removeprefix(TEAM_USER_PREFIX)
        try:
            check_team_name(team)
        except UsageError:
            continue  # not one of ours
        statements.append(Statement.plain(f"DROP USER IF EXISTS {quote_identifier(user)}{everywhere}"))
        statements += [
            Statement.plain(
                f"DROP ROW POLICY IF EXISTS {quote_identifier(team_policy(team))} ON {_on(database, table)}{everywhere}"
            )
            for table in objects.tables
        ]
    return statements


def apply(session: SqlSession, statements: Sequence[Statement]) -> None:
    for statement in statements:
        session.execute(statement.sql)
