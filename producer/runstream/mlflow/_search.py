"""MLflow's run search (``filter_string``, ``order_by``) as ClickHouse SQL with bound parameters.

MLflow's own parser (``SearchUtils``) reads the filter; every key and value it yields is bound as a
``{name:Type}`` query parameter, so nothing a user typed is ever part of the SQL text. Operators
and columns come from the tables below, never from the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.utils.search_utils import SearchUtils

# One row per run of the team's projects, in MLflow's terms: run_latest (as the run_table view
# reads it) for state, params and the last point of every metric, and runs for the tags.
RUNS_SQL = """
SELECT * FROM (
    SELECT l.run_id AS run_id,
           l.project AS project,
           tupleElement(l.state, 3) AS name,
           tupleElement(l.state, 5) AS user,
           multiIf(tupleElement(l.state, 2) = 'finished', 'FINISHED',
                   tupleElement(l.state, 2) IN ('failed', 'crashed'), 'FAILED',
                   tupleElement(l.state, 2) = 'killed', 'KILLED', 'RUNNING') AS status,
           toUnixTimestamp64Milli(tupleElement(l.state, 6)) AS start_ms,
           toUnixTimestamp64Milli(tupleElement(l.state, 7)) AS end_ms,
           mapApply((k, v) -> (k, tupleElement(v, 2)), l.params) AS params,
           mapApply((k, v) -> (k, tupleElement(v, 1)), l.metrics) AS metric_steps,
           mapApply((k, v) -> (k, toUnixTimestamp64Milli(tupleElement(v, 2))), l.metrics) AS metric_ms,
           mapApply((k, v) -> (k, tupleElement(v, 3)), l.metrics) AS metrics,
           t.tags AS tags
    FROM (SELECT * FROM run_latest FINAL WHERE team = {rs_team:String} AND @SCOPE@) AS l
    LEFT JOIN (SELECT run_id, tags FROM runs FINAL WHERE team = {rs_team:String} AND @SCOPE@) AS t
    USING (run_id)
)
"""

_COMPARE = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "LIKE": "LIKE", "ILIKE": "ILIKE"}
_NUMERIC = frozenset({"=", "!=", "<", "<=", ">", ">="})
_TEXT = frozenset({"=", "!=", "LIKE", "ILIKE"})
# MLflow's run attributes and the column each is read from.
_TEXT_ATTRIBUTES = {
    "run_id": "run_id",
    "run_name": "name",
    "run name": "name",
    "Run name": "name",
    "Run Name": "name",
    "status": "status",
    "user_id": "user",
}
_NUMERIC_ATTRIBUTES = {"start_time": "start_ms", "created": "start_ms", "Created": "start_ms", "end_time": "end_ms"}
_MAPS = {"metric": "metrics", "parameter": "params", "tag": "tags"}

SUPPORTED = (
    "metrics.<key> with = != < <= > >=; params.<key> and tags.<key> with = != LIKE ILIKE, IS NULL, IS NOT NULL; "
    "attributes run_id, run_name, status, user_id with = != LIKE ILIKE IN NOT IN; start_time, end_time with "
    "= != < <= > >=; joined with AND"
)


def _refuse(message: str) -> MlflowException:
    return MlflowException(f"{message}. runstream supports: {SUPPORTED}", error_code=INVALID_PARAMETER_VALUE)


class Bound:
    """Query parameters named ``p0``, ``p1``... in order."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, type_: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{type_}}}"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _refuse(f"expected a number, got {value!r}") from None


def _map_condition(kind: str, key: str, comparator: str, value: Any, bind: Bound) -> str:
    """A metric, param or tag: runs without the key never match a comparison (as in MLflow)."""
    column = _MAPS[kind]
    k = bind(key, "String")
    if comparator in ("IS NULL", "IS NOT NULL"):
        return f"{'NOT ' if comparator == 'IS NULL' else ''}mapContains({column}, {k})"
    if kind == "metric":
        if comparator not in _NUMERIC:
            raise _refuse(f"metrics cannot be compared with {comparator}")
        bound = bind(_number(value), "Float64")
    else:
        if comparator not in _TEXT:
            raise _refuse(f"{kind}s cannot be compared with {comparator}")
        bound = bind(str(value), "String")
    return f"(mapContains({column}, {k}) AND {column}[{k}] {_COMPARE[comparator]} {bound})"


def _condition(clause: dict[str, Any], bind: Bound) -> str:
    kind, key, comparator, value = clause["type"], clause["key"], clause["comparator"].upper(), clause["value"]
    if kind in _MAPS:
        return _map_condition(kind, key, comparator, value, bind)
    if kind == "attribute":
        if key in _NUMERIC_ATTRIBUTES:
            if comparator not in _NUMERIC:
                raise _refuse(f"attribute {key} cannot be compared with {comparator}")
            return f"{_NUMERIC_ATTRIBUTES[key]} {_COMPARE[comparator]} {bind(int(_number(value)), 'Int64')}"
        if key in _TEXT_ATTRIBUTES:
            column = _TEXT_ATTRIBUTES[key]
            if comparator in ("IN", "NOT IN"):
                values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
                return f"{column} {comparator} {bind(values, 'Array(String)')}"
            if comparator not in _TEXT:
                raise _refuse(f"attribute {key} cannot be compared with {comparator}")
            return f"{column} {_COMPARE[comparator]} {bind(str(value), 'String')}"
        raise _refuse(f"attribute {key!r} cannot be searched")
    raise _refuse(f"{kind} filters are not supported")


def where(filter_string: str | None, bind: Bound) -> list[str]:
    """The SQL conditions of ``filter_string`` (MLflow's syntax), their values bound through ``bind``."""
    return [_condition(clause, bind) for clause in SearchUtils.parse_search_filter(filter_string or "")]


def _order_term(clause: str, bind: Bound) -> list[str]:
    kind, key, ascending = SearchUtils.parse_order_by_for_search_runs(clause)
    direction = "ASC" if ascending else "DESC"
    if kind in _MAPS:
        column = _MAPS[kind]
        k = bind(key, "String")
        return [f"mapContains({column}, {k}) DESC", f"{column}[{k}] {direction}"]  # runs without the key last
    if kind == "attribute":
        attribute = _NUMERIC_ATTRIBUTES.get(key) or _TEXT_ATTRIBUTES.get(key)
        if attribute is None:
            raise _refuse(f"cannot order by attribute {key!r}")
        return [f"{attribute} {direction}"]
    raise _refuse(f"cannot order by {clause!r}")


def order(order_by: Sequence[str] | None, bind: Bound) -> list[str]:
    """MLflow's default order is the newest run first; ``run_id`` breaks ties, so pages are stable."""
    terms = [term for clause in order_by or () for term in _order_term(clause, bind)]
    return [*(terms or ["start_ms DESC"]), "run_id ASC"]


def search_sql(
    team: str,
    projects: Sequence[str] | None,
    filter_string: str | None,
    order_by: Sequence[str] | None,
    limit: int,
    offset: int,
    *,
    run_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of ``search_runs`` over ``projects`` of ``team`` (None: all of them), or of
    the one run ``run_id``."""
    bind = Bound()
    conditions = where(filter_string, bind)
    terms = order(order_by, bind)
    scope = []
    if projects is not None:
        scope.append(f"project IN {bind(list(projects), 'Array(String)')}")
    if run_id is not None:
        scope.append(f"run_id = {bind(run_id, 'String')}")
    sql = RUNS_SQL.replace("@SCOPE@", " AND ".join(scope) or "1")
    if conditions:
        sql += "WHERE " + "\n  AND ".join(conditions) + "\n"
    sql += "ORDER BY " + ", ".join(terms) + "\n"
    sql += f"LIMIT {bind(limit, 'UInt64')} OFFSET {bind(offset, 'UInt64')}\n"
    return sql, {**bind.values, "rs_team": team}
