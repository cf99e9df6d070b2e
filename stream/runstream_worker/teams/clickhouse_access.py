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

Platform admins get no ClickHouse user from here: they work in Grafana's main organization, whose
datasource uses the stack's ``grafana`` user (deploy/clickhouse/users.d/grafana.xml: read-only, no
team policy, so ``runstream_all_rows`` lets it read every team's rows).

The embedded engine (chDB) cannot hold users: its only user directory is a read-only ``users.xml``,
its session always runs as ``default`` (which lacks access management), and impersonation is off, so
``CREATE USER`` and ``CREATE ROW POLICY`` are refused there. Team isolation needs a ClickHouse server;
on chDB, ``teams sync`` only plans (``--dry-run``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

from runstream.errors import UsageError
from runstream.settings import Settings
from runstream_worker.clickhouse import is_embedded
from runstream_worker.teams.config import TEAM_NAME_PATTERN

TEAM_PROFILE = "runstream_team_readonly"
ALL_ROWS_POLICY = "runstream_all_rows"
TEAM_COLUMN = "team"

_TEAM_NAME = re.compile(TEAM_NAME_PATTERN)
# Views whose body runs with another user's rights would bypass the invoker's row policies.
_FOREIGN_RIGHTS = re.compile(r"\bSQL\s+SECURITY\s+(DEFINER|NONE)\b", re.IGNORECASE)


class SqlSession(Protocol):
    """The two calls this module makes: read rows, run a statement."""

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]: ...

    def execute(self, sql: str) -> None: ...


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


@dataclass(frozen=True)
class TeamObjects:
    """Objects of runstream's database that carry a ``team`` column."""

    tables: tuple[str, ...]
    """Tables holding rows: granted, and filtered by row policies."""

    views: tuple[str, ...]
    """Plain views running with the invoker's rights: granted; filtered through their tables."""

    skipped_views: tuple[str, ...] = ()
    """Views with a team column that run with other rights: not granted."""

    @property
    def granted(self) -> tuple[str, ...]:
        return tuple(sorted(self.tables + self.views))


def check_team_name(name: str) -> str:
    """``name`` if it is safe as a column value and inside identifiers, else :class:`UsageError`."""
    if not _TEAM_NAME.fullmatch(name):
        raise UsageError(
            f"unsafe team name {name!r}: use lowercase letters, digits and underscores, starting with a letter "
            "(at most 32 characters)"
        )
    return name


def quote_identifier(name: str) -> str:
    if not name or "\x00" in name:
        raise UsageError(f"invalid ClickHouse identifier {name!r}")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise UsageError("a ClickHouse string literal cannot contain NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def team_user(team: str) -> str:
    return f"team_{check_team_name(team)}"


def team_policy(team: str) -> str:
    return f"runstream_team_{check_team_name(team)}"


def team_condition(team: str) -> str:
    """The row filter of ``team``'s policy, a boolean SQL expression over the ``team`` column."""
    return f"{TEAM_COLUMN} = {quote_literal(check_team_name(team))}"


def require_server(settings: Settings) -> None:
    if is_embedded(settings.clickhouse_url):
        raise UsageError(
            "per-team ClickHouse users need a ClickHouse server: the embedded engine (chdb://) has no writable "
            "user directory and runs every query as one user; set RUNSTREAM_CLICKHOUSE_URL to the server "
            "(e.g. http://127.0.0.1:8123) or use --dry-run to see the plan"
        )


def discover(session: SqlSession, database: str) -> TeamObjects:
    """Tables and views of ``database`` with a ``team`` column."""
    rows = session.rows(
        "SELECT t.name, t.engine, t.create_table_query FROM system.tables AS t "
        "WHERE t.database = {db:String} AND t.name IN "
        "(SELECT table FROM system.columns WHERE database = {db:String} AND name = {column:String}) "
        "ORDER BY t.name",
        {"db": database, "column": TEAM_COLUMN},
    )
    tables: list[str] = []
    views: list[str] = []
    skipped: list[str] = []
    for name, engine, create_query in rows:
        if engine == "View":
            (skipped if _FOREIGN_RIGHTS.search(str(create_query)) else views).append(str(name))
        elif engine not in {"MaterializedView", "LiveView", "WindowView"}:
            tables.append(str(name))
    return TeamObjects(tuple(tables), tuple(views), tuple(skipped))


def _on(database: str, table: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}"


def shared_statements(objects: TeamObjects, database: str) -> list[Statement]:
    """The team profile and, on every team table, the pass-through policy for everyone else."""
    profile = quote_identifier(TEAM_PROFILE)
    statements = [
        Statement.plain(f"CREATE SETTINGS PROFILE IF NOT EXISTS {profile} SETTINGS readonly = 2"),
        Statement.plain(f"ALTER SETTINGS PROFILE {profile} SETTINGS readonly = 2"),
    ]
    statements += [
        Statement.plain(
            f"CREATE ROW POLICY OR REPLACE {quote_identifier(ALL_ROWS_POLICY)} ON {_on(database, table)} "
            "AS PERMISSIVE FOR SELECT USING 1 TO ALL"
        )
        for table in objects.tables
    ]
    return statements


def team_statements(team: str, password: str, objects: TeamObjects, database: str) -> list[Statement]:
    """User, row policies, then grants (so a new user never reads a table before its policy exists)."""
    if not objects.tables:
        raise UsageError(f"no table with a team column in database {database!r}: run `runstream migrate` first")
    if not password:
        raise UsageError(f"empty ClickHouse password for team {team!r}")
    user = quote_identifier(team_user(team))

    def account(verb: str, secret: str) -> str:
        return (
            f"{verb} {user} IDENTIFIED WITH sha256_password BY {quote_literal(secret)} "
            f"DEFAULT DATABASE {quote_identifier(database)} SETTINGS PROFILE {quote_literal(TEAM_PROFILE)}"
        )

    # CREATE ... IF NOT EXISTS leaves an existing user alone; ALTER then sets the current password.
    statements = [
        Statement(account(verb, password), account(verb, "******"))
        for verb in ("CREATE USER IF NOT EXISTS", "ALTER USER")
    ]
    statements += [
        Statement.plain(
            f"CREATE ROW POLICY OR REPLACE {quote_identifier(team_policy(team))} ON {_on(database, table)} "
            f"AS RESTRICTIVE FOR SELECT USING {team_condition(team)} TO {user}"
        )
        for table in objects.tables
    ]
    grants = ", ".join(f"SELECT ON {_on(database, name)}" for name in objects.granted)
    # REPLACE OPTION drops grants on objects that no longer qualify.
    statements.append(Statement.plain(f"GRANT {grants} TO {user} WITH REPLACE OPTION"))
    return statements


def apply(session: SqlSession, statements: Sequence[Statement]) -> None:
    for statement in statements:
        session.execute(statement.sql)
