"""What a team may read, as one rule for both places that enforce it.

A team reads the tables of runstream's database that have a ``team`` column, cut to its own rows
(``team = '<name>'``), and the plain views with a ``team`` column, which run with their invoker's
rights and so read those tables cut the same way. On a ClickHouse server this becomes a user with
row policies and grants (``teams/clickhouse_access.py``); on the embedded engine the endpoint
enforces it itself (``endpoint/``). Both find the objects here, so the two cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runstream_core.errors import UsageError

# A team name is the `team` column value, part of a ClickHouse user name (team_<name>) and of an
# env var name (RUNSTREAM_TEAM_<NAME>_CLICKHOUSE_PASSWORD): lowercase identifier characters only.
TEAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
TEAM_COLUMN = "team"
TEAM_USER_PREFIX = "team_"

_TEAM_NAME = re.compile(TEAM_NAME_PATTERN)
# Views whose body runs with another user's rights would bypass the invoker's row policies.
_FOREIGN_RIGHTS = re.compile(r"\bSQL\s+SECURITY\s+(DEFINER|NONE)\b", re.IGNORECASE)


class SqlSession(Protocol):
    """The two calls access management makes: read rows, run a statement."""

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]: ...

    def execute(self, sql: str) -> None: ...


@dataclass(frozen=True)
class TeamObjects:
    """Objects of runstream's database that carry a ``team`` column."""

    tables: tuple[str, ...]
    """Tables holding rows: granted, and cut to the team's rows."""

    views: tuple[str, ...]
    """Plain views running with the invoker's rights: granted; cut through their tables."""

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


def team_user(team: str) -> str:
    return f"{TEAM_USER_PREFIX}{check_team_name(team)}"


def team_condition(team: str) -> str:
    """The row filter of ``team``: a boolean SQL expression over the ``team`` column."""
    return f"{TEAM_COLUMN} = '{check_team_name(team)}'"  # a checked name has no quote or backslash


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
        elif engine not in {"MaterializedView", "LiveView", "WindowView", "Null"}:  # Null: stores nothing to read
            tables.append(str(name))
    return TeamObjects(tuple(tables), tuple(views), tuple(skipped))
