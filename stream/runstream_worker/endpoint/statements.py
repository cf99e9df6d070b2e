"""What a request's SQL may do, decided from the engine's own parse of it, never from the text.

Two views of the statement come from the engine: chDB's ``classify_query`` (how many statements,
and whether they read, write or control the session or server) and ``EXPLAIN AST`` (every node of
the parse tree). The checks are closed by default:

- one statement, whose root is a known read (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN), or on a
  writable endpoint also INSERT and DDL; never SET, USE, KILL, SYSTEM, INTO OUTFILE, FROM INFILE,
  user or grant statements;
- table functions only from a short list that reads nothing outside the store (``numbers``,
  ``values``, ...): ``file``, ``url``, ``s3``, ``remote``, ``mysql``, ``executable``, ``input``,
  ``Python`` and every other one are refused;
- no ordinary function that reaches outside the store (``file``, ``dictGet``, ``joinGet``, ...);
- system tables only from a list that shows no paths, queries or server internals.

The dump prints identifiers raw, so a crafted name can add lines to it; every line is checked on
its own, so added lines can only cause a refusal, never hide a real node.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from clickhouse_connect.driver.binding import format_str

from runstream_core.team_access import TEAM_USER_PREFIX, team_condition
from runstream_worker.endpoint.errors import Code, EndpointError, denied

# Statement roots as EXPLAIN AST names them.
READ_ROOTS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "ShowTables",
        "ShowColumns",
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ShowCreateDatabaseQuery",
        "DescribeQuery",
        "ExistsTableQuery",
        "ExistsDatabaseQuery",
        "ExistsViewQuery",
        "ExistsDictionaryQuery",
        "Explain",
    }
)
WRITE_ROOTS = frozenset(
    {
        "InsertQuery",
        "CreateQuery",
        "AlterQuery",
        "DropQuery",
        "RenameQuery",
        "OptimizeQuery",
    }
)

# Table functions that read nothing but their arguments.
SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateSeries",
        "values",
        "null",
        "view",
        "format",
        "generateRandom",
    }
)
_SAFE_TABLE_FUNCTIONS_LOWER = frozenset(name.lower() for name in SAFE_TABLE_FUNCTIONS)

# Ordinary functions that read files, other tables by name, dictionaries, models or server internals.
UNSAFE_FUNCTIONS = frozenset(
    {
        "file",
        "joinget",
        "joingetornull",
        "catboostevaluate",
        "naivebayesclassifier",
        "demangle",
        "getserversetting",
        "getmergetreesetting",
        "showcertificate",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "generateserialid",
        "getclienthttpheader",
    }
)
UNSAFE_FUNCTION_PREFIXES = ("dict", "addressto")

# System tables a reader may see: catalogue and reference tables, no paths, queries or logs.
SAFE_SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "databases",
        "tables",
        "columns",
        "functions",
        "table_functions",
        "formats",
        "data_type_families",
        "settings",
        "time_zones",
        "collations",
        "table_engines",
        "aggregate_function_combinators",
        "keywords",
        "build_options",
        "contributors",
        "licenses",
    }
)
SYSTEM_DATABASES = frozenset({"system"})
CATALOG_DATABASES = frozenset({"INFORMATION_SCHEMA", "information_schema"})

CACHED_SQL_BYTES = 16 * 1024
CACHED_VERDICTS = 512
_FORMAT_LINE = re.compile(r"^FORMAT (`?[A-Za-z0-9_]+`?)$")
# One dump line: indentation, node type, then an optional name and annotations.
_LINE = re.compile(r"^(?P<indent> *)(?P<node>[A-Za-z]+)(?: +(?P<rest>.*))?$")


@dataclass(frozen=True)
class TeamScope:
    """What a team's user may read (``team_access``): the granted objects of the store's database,
    each table cut to the team's rows by the filters the endpoint sets on the session."""

    team: str
    database: str
    granted: frozenset[str]
    """Tables and views with a team column, readable by the team."""
    store_objects: frozenset[str]
    """Every table and view of the database, granted or not."""
    filtered_tables: frozenset[str]
    """The granted tables that hold rows: each is cut to the team's rows."""

    def table_filters(self) -> str:
        """ClickHouse's ``additional_table_filters`` cutting every team table to the team's rows: a
        view reads through them, and the session's ``readonly = 1`` keeps the query from changing it."""
        condition = format_str(team_condition(self.team))
        pairs = ", ".join(
            f"{format_str(f'{self.database}.{table}')}: {condition}" for table in sorted(self.filtered_tables)
        )
        return "{" + pairs + "}"

    def refuse(self, database: str, table: str) -> EndpointError:
        return denied(
            f"{TEAM_USER_PREFIX}{self.team}: Not enough privileges. To execute this query, it's necessary to have "
            f"the grant SELECT ON {database}.{table}"
        )


@dataclass(frozen=True)
class Statement:
    """A statement that passed the checks."""

    sql: str
    root: str  # the parse tree's root node, e.g. "SelectWithUnionQuery"
    writes: bool
    output_format: str | None  # the statement's own FORMAT clause, if any


@dataclass(frozen=True)
class _Node:
    depth: int
    node: str
    name: str


def _nodes(dump: str) -> list[_Node]:
    nodes = []
    for line in dump.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue  # the tail of an identifier printed with a line break: checked as its own line anyway
        rest = (match["rest"] or "").strip()
        name = rest.split(" (", 1)[0].strip() if rest and not rest.startswith("(") else ""
        nodes.append(_Node(len(match["indent"]), match["node"], name))
    return nodes


def _split_qualified(name: str) -> tuple[str | None, str]:
    database, _, table = name.rpartition(".")
    return (database or None), table


class StatementPolicy:
    """Checks one request's SQL; the engine supplies its classification and parse."""

    def __init__(
        self,
        classify: Callable[[str], dict[str, object]],
        explain_ast: Callable[[str, Mapping[str, str]], str],
        format_query: Callable[[str], str],
        table_functions: Iterable[str],
    ) -> None:
        self._classify = classify
        self._explain_ast = explain_ast
        self._format_query = format_query
        self._table_functions = {name.lower() for name in table_functions}
        self._cache: OrderedDict[tuple[object, ...], Statement | EndpointError] = OrderedDict()
        self._cache_lock = threading.Lock()

    def check(
        self,
        sql: str,
        *,
        database: str,
        allow_writes: bool,
        params: Mapping[str, str] | None = None,
        scope: TeamScope | None = None,
    ) -> Statement:
        """The checked statement, or ``EndpointError`` with the ClickHouse code a server would use.

        ``params`` are the request's query parameters: the engine substitutes them before it builds
        the tree (an ``Identifier`` parameter can name a table), so the tree checked is the one run.
        ``scope`` narrows what a team's user may read; it never allows writes.
        Dashboards send the same statements again and again: the verdict on a statement of up to
        ``CACHED_SQL_BYTES`` is remembered (it depends on nothing but these arguments).
        """
        key = (sql, tuple(sorted((params or {}).items())), database, allow_writes and scope is None, scope)
        if len(sql) > CACHED_SQL_BYTES:
            return self._check(*key)
        with self._cache_lock:
            verdict = self._cache.get(key)
            if verdict is not None:
                self._cache.move_to_end(key)
        if verdict is None:
            try:
                verdict = self._check(*key)
            except EndpointError as exc:
                verdict = exc
            with self._cache_lock:
                self._cache[key] = verdict
                if len(self._cache) > CACHED_VERDICTS:
                    self._cache.popitem(last=False)
        if isinstance(verdict, EndpointError):
            raise EndpointError(verdict.code, verdict.message, verdict.name)
        return verdict

    def _check(
        self,
        sql: str,
        params: tuple[tuple[str, str], ...],
        database: str,
        allow_writes: bool,
        scope: TeamScope | None,
    ) -> Statement:
        if not sql.strip():
            raise EndpointError(Code.SYNTAX_ERROR, "Empty query")
        info = self._classify(sql)
        count = int(str(info.get("statement_count", 0)))
        query_class = str(getattr(info.get("query_class"), "name", info.get("query_class")))
        if count > 1:
            raise EndpointError(Code.SYNTAX_ERROR, "Multi-statements are not allowed")
        dump = self._explain_ast(sql, dict(params))  # raises the engine's own syntax error for SQL that does not parse
        nodes = _nodes(dump)
        if not nodes:
            raise EndpointError(Code.SYNTAX_ERROR, "Empty query")
        root = nodes[0].node
        if scope is not None and root == "Explain":
            raise denied(f"{TEAM_USER_PREFIX}{scope.team}: EXPLAIN is not allowed for team users")
        if root == "Explain":
            inner = next((n.node for n in nodes[1:] if n.depth == 1), "")
            if inner not in READ_ROOTS:
                raise denied(f"EXPLAIN of {inner or 'this statement'} is not allowed on this endpoint")
        writes = root in WRITE_ROOTS
        if root not in READ_ROOTS and not (allow_writes and writes):
            raise EndpointError(
                Code.READONLY,
                f"{_statement_name(root)} is not allowed: this endpoint only runs "
                + ("single statements that read or write tables" if allow_writes else "single read statements")
                + " (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN"
                + (", INSERT, DDL)" if allow_writes else ")"),
            )
        if query_class in {"CONTROL", "MUTATING_GLOBAL"} or (query_class == "MUTATING" and not allow_writes):
            raise EndpointError(
                Code.READONLY,
                "INTO OUTFILE, FROM INFILE, SET, USE, KILL, SYSTEM and access statements are not allowed here",
            )
        if root == "InsertQuery" and any(n.depth == 1 and n.node == "Literal" for n in nodes):
            raise EndpointError(Code.READONLY, "INSERT ... FROM INFILE is not allowed here")
        for node in nodes:
            self._check_node(node, database)
            if scope is not None:
                _check_team_node(node, database, scope)
        if not writes and any(node.node == "Set" for node in nodes):
            raise EndpointError(
                Code.READONLY,
                "Cannot modify settings in the query (SETTINGS clause) on this endpoint: pass them as URL parameters",
            )
        return Statement(sql=sql, root=root, writes=writes, output_format=None if writes else self._output_format(sql))

    def _output_format(self, sql: str) -> str | None:
        """The statement's own FORMAT clause, read from the engine's normalised text of it, in which
        comments are gone and the clause stands on a line of its own (before any SETTINGS line)."""
        lines = self._format_query(sql).strip().split("\n")
        tail = lines[-2:] if lines and lines[-1].startswith("SETTINGS ") else lines[-1:]
        match = _FORMAT_LINE.match(tail[0]) if tail else None
        return match[1].strip("`") if match else None

    def _check_node(self, node: _Node, database: str) -> None:
        if node.node == "Function":
            lowered = node.name.lower()
            if lowered in UNSAFE_FUNCTIONS or lowered.startswith(UNSAFE_FUNCTION_PREFIXES):
                raise denied(f"function {node.name} reaches outside the store and is not allowed here")
            # Compared as the lookup is, whatever the case: ``ENGINE = Null`` names the engine of a
            # table that stores nothing, and parses as the function ``Null``, the table function ``null``.
            if lowered in self._table_functions and lowered not in _SAFE_TABLE_FUNCTIONS_LOWER:
                raise denied(f"table function {node.name} is not allowed here")
        elif node.node in {"TableIdentifier", "Identifier"} and node.name:
            qualified, table = _split_qualified(node.name)
            if node.node == "Identifier" and qualified is None:
                return  # a column or an alias
            in_db = qualified if qualified is not None else database
            if in_db in SYSTEM_DATABASES and table not in SAFE_SYSTEM_TABLES:
                raise denied(f"system table {in_db}.{table} is not readable here")


def _statement_name(root: str) -> str:
    words = re.sub(r"(Query|Statement)$", "", root)
    return re.sub(r"(?<!^)(?=[A-Z])", " ", words).upper() or "this statement"


def _check_team_node(node: _Node, database: str, scope: TeamScope) -> None:
    """A team reads the granted objects of the store's database, the catalogue, and nothing else."""
    if node.node not in {"TableIdentifier", "Identifier"} or not node.name:
        return
    qualified, table = _split_qualified(node.name)
    if qualified is None:
        # Unqualified: the store's database (a team's session cannot change it). A name that is no
        # object there is a CTE, an alias or a column, which the engine resolves or refuses.
        if table in scope.store_objects and table not in scope.granted:
            raise scope.refuse(database, table)
        return
    if qualified == scope.database:
        if table not in scope.granted:
            raise scope.refuse(qualified, table)
    elif qualified not in SYSTEM_DATABASES | CATALOG_DATABASES and node.node == "TableIdentifier":
        raise scope.refuse(qualified, table)
