"""Experiments are projects: their names, and ``search_experiments``' filter and order on a short list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.utils.search_utils import SearchExperimentsUtils

from runstream_core.events import MAX_NAME_LEN, control_character

_TEXT = {"name", "experiment_id"}
_NUMERIC = {"creation_time", "last_update_time"}


def check_name(name: Any) -> None:
    """An experiment's name is a project's: 1 to ``MAX_NAME_LEN`` characters, no control characters."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LEN or control_character(name):
        raise MlflowException(
            f"invalid experiment name {name!r}: 1 to {MAX_NAME_LEN} characters without control characters",
            error_code=INVALID_PARAMETER_VALUE,
        )


def _like(pattern: str, text: str, *, ignore_case: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _compare(held: Any, comparator: str, value: Any) -> bool:
    if held is None:
        return False
    if comparator == "=":
        return bool(held == value)
    if comparator == "!=":
        return bool(held != value)
    if comparator == "LIKE":
        return _like(str(value), str(held), ignore_case=False)
    if comparator == "ILIKE":
        return _like(str(value), str(held), ignore_case=True)
    ops = {"<": held < value, "<=": held <= value, ">": held > value, ">=": held >= value}
    return bool(ops[comparator])


def matches(experiment: Experiment, clause: dict[str, Any]) -> bool:
    kind, key, comparator, value = clause["type"], clause["key"], clause["comparator"].upper(), clause["value"]
    if kind != "attribute" or key not in _TEXT | _NUMERIC:
        raise MlflowException(
            f"search_experiments: {kind} {key!r} cannot be searched here; use name, experiment_id, creation_time "
            "or last_update_time",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if key in _NUMERIC:
        if comparator in ("LIKE", "ILIKE"):
            raise MlflowException(f"{key} cannot be compared with {comparator}", error_code=INVALID_PARAMETER_VALUE)
        return _compare(getattr(experiment, key), comparator, int(value))
    return _compare(getattr(experiment, key), comparator, str(value))


def sort(experiments: list[Experiment], order_by: Sequence[str] | None) -> list[Experiment]:
    """MLflow's default: the newest first, then by id."""
    clauses = [SearchExperimentsUtils.parse_order_by_for_search_experiments(c) for c in order_by or ()]
    clauses = clauses or [("attribute", "creation_time", False)]
    ordered = sorted(experiments, key=lambda e: e.experiment_id)
    for _kind, key, ascending in reversed(clauses):
        present = [e for e in ordered if getattr(e, key) is not None]
        missing = [e for e in ordered if getattr(e, key) is None]
        ordered = sorted(present, key=attrgetter(key), reverse=not ascending) + missing
    return ordered
