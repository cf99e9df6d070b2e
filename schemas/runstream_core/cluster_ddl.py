"""The cluster form of the migrations: each statement written for one node, translated for a cluster.

Migrations are written once, for one node. On a cluster (see ``cluster.py`` for the layout) each
statement becomes:

- ``CREATE TABLE t (...) ENGINE = XMergeTree(args)``: ``t_local ON CLUSTER`` with
  ``ReplicatedXMergeTree(REPLICA_PATH, REPLICA_NAME, args)`` (the deduplication window of a
  replicated table is ``replicated_deduplication_window``), then ``t ON CLUSTER AS t_local`` with
  ``ENGINE = Distributed(cluster, database, t_local, sharding key)``;
- ``CREATE TABLE t (...) ENGINE = Null`` (stores nothing; views chained on it): ``t_local ON CLUSTER``
  only: rows reach it through the views of the shard that holds them, never from a client;
- ``CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s``: ``v ON CLUSTER TO t_local``, reading
  ``s_local``: each shard aggregates its own rows into its own rollups;
- ``CREATE VIEW v AS ...``: ``v ON CLUSTER``, its query unchanged: it reads the Distributed tables;
- ``ALTER TABLE t ...``: the local table, plus the Distributed one for column changes (a Distributed
  table has columns but no indexes, TTL or settings);
- ``INSERT INTO t ... SELECT``: unchanged: through the Distributed table, which places every row on
  its run's shard (the migrate client inserts in the foreground, so it waits for the shards);
- ``DROP TABLE|VIEW``: ``ON CLUSTER``, for a table both of its tables.

Anything else raises :class:`ClusterFormError`, so a migration whose cluster form is unknown stops
``runstream migrate --cluster`` and its test instead of running half translated. Names are quoted
with clickhouse-connect's ``binding``, the one quoting helper; the cluster name is checked first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.binding import format_str, quote_identifier

from runstream_core.cluster import REPLICA_NAME, REPLICA_PATH, check_cluster_name, local_table, sharding_key
from runstream_core.errors import RunstreamError
from runstream_core.sql_tokens import (
    Token,
    closing,
    join,
    meaningful,
    next_meaningful,
    split_top_level,
    tokenize,
)

# ALTER commands that change columns, which a Distributed table must follow.
_COLUMN_COMMANDS = {("ADD", "COLUMN"), ("DROP", "COLUMN"), ("MODIFY", "COLUMN"), ("RENAME", "COLUMN")}
_COLUMN_COMMANDS |= {("COMMENT", "COLUMN")}
# Elements of a column list that are not columns.
_NOT_COLUMNS = {"INDEX", "PROJECTION", "CONSTRAINT", "PRIMARY"}
_NON_REPLICATED_WINDOW = "non_replicated_deduplication_window"
_REPLICATED_WINDOW = "replicated_deduplication_window"


class ClusterFormError(RunstreamError):
    """A statement has no cluster form: runstream cannot tell how it should run on a cluster."""


def on_cluster(cluster: str) -> str:
    """The ``ON CLUSTER`` clause for ``cluster`` (checked, then quoted)."""
    return f"ON CLUSTER {quote_identifier(check_cluster_name(cluster))}"


def _engine_kind(rest: list[Token]) -> str | None:
    """The engine named in what follows a column list (``ENGINE = Kind(...)``), if any."""
    engine = next((i for i in meaningful(rest) if rest[i].is_word("ENGINE")), None)
    at = next_meaningful(rest, engine + 1) if engine is not None else None
    if at is not None and rest[at].text == "=":
        at = next_meaningful(rest, at + 1)
    return rest[at].text if at is not None and rest[at].kind == "word" else None


def _word(text: str) -> Token:
    return Token("word", text)


@dataclass
class ClusterSchema:
    """Translates migration statements in order, keeping track of what they created."""

    cluster: str
    database: str
    tables: dict[str, str] = field(default_factory=dict)
    """Tables created so far (their user-facing names) and their sharding keys."""
    views: set[str] = field(default_factory=set)
    materialized_views: set[str] = field(default_factory=set)
    local_only: set[str] = field(default_factory=set)
    """Tables that exist on each shard only (Null engine: no Distributed table in front)."""

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)

    @property
    def clause(self) -> str:
        return on_cluster(self.cluster)

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)} {self.clause}"

    def translate(self, statement: str) -> list[str]:
        """The statements that do on the cluster what ``statement`` does on one node."""
        tokens = tokenize(statement)
        words = [tokens[i].text.upper() for i in meaningful(tokens)][:4]
        if words[:2] == ["CREATE", "TABLE"]:
            return self._create_table(tokens)
        if words[:3] == ["CREATE", "MATERIALIZED", "VIEW"]:
            return [self._create_materialized_view(tokens)]
        if words[:2] == ["CREATE", "VIEW"] or words == ["CREATE", "OR", "REPLACE", "VIEW"]:
            return [self._create_view(tokens)]
        if words[:2] == ["ALTER", "TABLE"]:
            return self._alter_table(tokens)
        if words[:2] == ["INSERT", "INTO"]:
            return [statement]
        if words[:1] == ["DROP"] and words[1:2] in (["TABLE"], ["VIEW"]):
            return self._drop(tokens)
        raise ClusterFormError(
            f"no cluster form for a statement starting {' '.join(words[:3])!r}: runstream_core/cluster_ddl.py "
            "translates CREATE TABLE, CREATE [MATERIALIZED] VIEW, ALTER TABLE, INSERT and DROP; teach it this "
            "form (with a test) or write the migration with those"
        )

    # -- statements -------------------------------------------------------------------------------

    def _create_table(self, tokens: list[Token]) -> list[str]:
        at = _Header.parse(tokens, ("CREATE", "TABLE"))
        name = at.name
        if name in self.tables or name in self.views or name in self.materialized_views:
            raise ClusterFormError(f"table {name} is created twice")
        opening = next_meaningful(tokens, at.index + 1)
        if opening is None or tokens[opening].text != "(":
            raise ClusterFormError(f"table {name}: list its columns (CREATE TABLE {name} (...) ENGINE = ...)")
        end = closing(tokens, opening)
        columns = _column_names(tokens[opening + 1 : end])
        key = sharding_key(name, columns)
        if key is None:
            raise ClusterFormError(
                f"table {name} has no run (team, project, run_id) to shard by: give it a sharding key in "
                "RUNLESS_SHARDING_KEYS (runstream_core/cluster.py), with a comment saying why"
            )
        local = local_table(name)
        if _engine_kind(tokens[end + 1 :]) == "Null":
            self.tables[name] = key
            self.local_only.add(name)
            return [at.renamed(tokens, f"{quote_identifier(local)} {self.clause}")]
        body = self._replicated(tokens, end + 1, name)
        create_local = at.renamed(tokens[: end + 1] + body, f"{quote_identifier(local)} {self.clause}")
        exists = " IF NOT EXISTS" if at.if_exists else ""
        create_distributed = (
            f"CREATE TABLE{exists} {quote_identifier(name)} {self.clause} AS {quote_identifier(local)}\n"
            f"ENGINE = Distributed({format_str(self.cluster)}, {format_str(self.database)}, "
            f"{format_str(local)}, {key})"
        )
        self.tables[name] = key
        return [create_local, create_distributed]

    def _replicated(self, tokens: list[Token], start: int, table: str) -> list[Token]:
        """``tokens[start:]`` (what follows the column list) with the engine made Replicated."""
        rest = list(tokens[start:])
        engine = next((i for i in meaningful(rest) if rest[i].is_word("ENGINE")), None)
        if engine is None:
            raise ClusterFormError(f"table {table}: name its engine (ENGINE = ...MergeTree)")
        at = next_meaningful(rest, engine + 1)
        if at is not None and rest[at].text == "=":
            at = next_meaningful(rest, at + 1)
        if at is None or rest[at].kind != "word":
            raise ClusterFormError(f"table {table}: name its engine (ENGINE = ...MergeTree)")
        kind = rest[at].text
        if not kind.endswith("MergeTree") or kind.startswith("Replicated"):
            raise ClusterFormError(
                f"table {table}: engine {kind} has no replicated form; a cluster keeps MergeTree-family tables"
            )
        arguments: list[Token] = []
        last = at
        after = next_meaningful(rest, at + 1)
        if after is not None and rest[after].text == "(":
            last = closing(rest, after)
            arguments = rest[after + 1 : last]
        extra = join(arguments).strip()
        replicated = f"Replicated{kind}({format_str(REPLICA_PATH)}, {format_str(REPLICA_NAME)}"
        replicated += f", {extra})" if extra else ")"
        tail = [
            _word(_REPLICATED_WINDOW) if token.is_word(_NON_REPLICATED_WINDOW.upper()) else token
            for token in rest[last + 1 :]
        ]
        return [*rest[:at], _word(replicated), *tail]

    def _create_materialized_view(self, tokens: list[Token]) -> str:
        at = _Header.parse(tokens, ("CREATE", "MATERIALIZED", "VIEW"))
        to = next_meaningful(tokens, at.index + 1)
        target = next_meaningful(tokens, to + 1) if to is not None and tokens[to].is_word("TO") else None
        if target is None or tokens[target].name not in self.tables:
            raise ClusterFormError(
                f"materialized view {at.name} must write TO a table of the migrations, so that its rows stay "
                "on the shard that computed them"
            )
        query = next(
            (i for i in meaningful(tokens, target + 1) if tokens[i].is_word("AS") and _depth(tokens, i) == 0), None
        )
        if query is None:
            raise ClusterFormError(f"materialized view {at.name}: no AS SELECT")
        if any(tokens[i].is_word("POPULATE") for i in meaningful(tokens, target + 1) if i < query):
            raise ClusterFormError(f"materialized view {at.name}: POPULATE has no cluster form; backfill with INSERT")
        target_name = str(tokens[target].name)
        reads = self._local_reads(tokens[query + 1 :], at.name)
        head = [*tokens[:target], _word(quote_identifier(local_table(target_name))), *tokens[target + 1 : query + 1]]
        self.materialized_views.add(at.name)
        return at.renamed(head + reads, f"{quote_identifier(at.name)} {self.clause}")

    def _local_reads(self, query: list[Token], view: str) -> list[Token]:
        """``query`` reading the local tables: every table after FROM or JOIN, at any subquery level."""
        out = list(query)
        subquery: list[bool] = []  # per open parenthesis: does it open a subquery?
        previous: Token | None = None
        for i, token in enumerate(query):
            if token.kind == "punct" and token.text == "(":
                first = next_meaningful(query, i + 1)
                subquery.append(first is not None and query[first].is_word("SELECT", "WITH"))
            elif token.kind == "punct" and token.text == ")":
                subquery.pop()
            elif token.is_word("FROM", "JOIN") and (not subquery or subquery[-1]) and not _after_array(previous):
                self._localize(query, out, i, view)
            if token.meaningful:
                previous = token
        return out

    def _localize(self, query: list[Token], out: list[Token], keyword: int, view: str) -> None:
        source = next_meaningful(query, keyword + 1)
        if source is None or query[source].name is None:
            return  # a subquery or an array
        after = next_meaningful(query, source + 1)
        if after is not None and query[after].text in (".", "("):
            return  # database.table or a table function: not one of the migrations' tables
        name = str(query[source].name)
        if name not in self.tables:
            raise ClusterFormError(
                f"materialized view {view} reads {name}, which is not a table of the migrations: a view "
                "on a shard can only read that shard's local tables"
            )
        out[source] = _word(quote_identifier(local_table(name)))

    def _create_view(self, tokens: list[Token]) -> str:
        at = _Header.parse(tokens, ("CREATE", "VIEW"), or_replace=True)
        self.views.add(at.name)
        return at.renamed(tokens, f"{quote_identifier(at.name)} {self.clause}")

    def _alter_table(self, tokens: list[Token]) -> list[str]:
        at = _Header.parse(tokens, ("ALTER", "TABLE"), if_not_exists=False)
        if at.name not in self.tables:
            raise ClusterFormError(
                f"ALTER TABLE {at.name}: only tables created by the migrations have a cluster form for ALTER"
            )
        commands = split_top_level(tokens[at.index + 1 :])
        columns = [command for command in commands if _command(command) in _COLUMN_COMMANDS]
        statements = [
            f"ALTER TABLE {quote_identifier(local_table(at.name))} {self.clause}{','.join(map(join, commands))}"
        ]
        if columns and at.name not in self.local_only:
            statements.append(f"ALTER TABLE {quote_identifier(at.name)} {self.clause}{','.join(map(join, columns))}")
        return statements

    def _drop(self, tokens: list[Token]) -> list[str]:
        kind = [tokens[i].text.upper() for i in meaningful(tokens)][1]
        at = _Header.parse(tokens, ("DROP", kind), if_not_exists=False)
        statements = []
        if at.name not in self.local_only:
            statements.append(at.renamed(tokens, f"{quote_identifier(at.name)} {self.clause}"))
        if at.name in self.tables:
            statements.append(at.renamed(tokens, f"{quote_identifier(local_table(at.name))} {self.clause}"))
        self.tables.pop(at.name, None)
        self.local_only.discard(at.name)
        self.views.discard(at.name)
        self.materialized_views.discard(at.name)
        return statements


@dataclass(frozen=True)
class _Header:
    """Where the object's name is in ``KEYWORDS [IF [NOT] EXISTS] name``."""

    index: int
    name: str
    if_exists: bool

    @classmethod
    def parse(
        cls,
        tokens: Sequence[Token],
        keywords: tuple[str, ...],
        *,
        if_not_exists: bool = True,
        or_replace: bool = False,
    ) -> _Header:
        positions = meaningful(tokens)
        for keyword in keywords:
            at = next(positions, None)
            if at is not None and or_replace and tokens[at].is_word("OR"):
                if not tokens[next(positions)].is_word("REPLACE"):
                    raise ClusterFormError("expected OR REPLACE")
                at = next(positions, None)
            if at is None or not tokens[at].is_word(keyword):
                raise ClusterFormError(f"expected {' '.join(keywords)}")
        index = next(positions, None)
        guarded = False
        if index is not None and tokens[index].is_word("IF"):
            expected = (["NOT"] if if_not_exists else []) + ["EXISTS"]
            for word in expected:
                at = next(positions, None)
                if at is None or not tokens[at].is_word(word):
                    raise ClusterFormError(f"expected IF {' '.join(expected)}")
            guarded = True
            index = next(positions, None)
        if index is None or tokens[index].name is None:
            raise ClusterFormError(f"expected a name after {' '.join(keywords)}")
        after = next(positions, None)
        if after is not None and tokens[after].text == ".":
            raise ClusterFormError(
                f"{tokens[index].name}.: name objects without a database; migrations run in the configured one"
            )
        return cls(index, str(tokens[index].name), guarded)

    def renamed(self, tokens: Sequence[Token], text: str) -> str:
        """``tokens`` with the name replaced by ``text``."""
        return join([*tokens[: self.index], _word(text), *tokens[self.index + 1 :]])


def _column_names(elements: Sequence[Token]) -> list[str]:
    names = []
    for element in split_top_level(elements):
        first = next_meaningful(element, 0)
        if first is None or element[first].is_word(*_NOT_COLUMNS):
            continue
        name = element[first].name
        if name is not None:
            names.append(name)
    return names


def _command(tokens: Sequence[Token]) -> tuple[str, ...]:
    return tuple(tokens[i].text.upper() for i in meaningful(tokens))[:2]


def _after_array(previous: Token | None) -> bool:
    """ARRAY JOIN takes arrays, not tables."""
    return previous is not None and previous.is_word("ARRAY")


def _depth(tokens: Sequence[Token], index: int) -> int:
    depth = 0
    for token in tokens[:index]:
        if token.kind == "punct":
            depth += {"(": 1, ")": -1}.get(token.text, 0)
    return depth
