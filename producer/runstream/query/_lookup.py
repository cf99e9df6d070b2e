"""Run ids as callers pass them, checked against the runs that exist."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runstream_core.errors import UsageError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

RUNS_SQL = """
SELECT run_id, team, project, tupleElement(state, 3) AS name
FROM run_latest FINAL
WHERE run_id IN {run_ids:Array(String)}
"""


@dataclass(frozen=True)
class RunRef:
    run_id: str
    team: str
    project: str
    name: str


def run_id_list(run_ids: str | Iterable[str]) -> list[str]:
    """``run_ids`` as a list without repeats, in the caller's order; one id may be given as a string."""
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    if not ids:
        raise UsageError("run_ids is empty: give at least one run id")
    bad = [run_id for run_id in ids if not isinstance(run_id, str) or not run_id]
    if bad:
        raise UsageError(f"run ids must be non-empty strings, got {bad!r}")
    return list(dict.fromkeys(ids))


def find_runs(client: Client, run_ids: list[str]) -> dict[str, RunRef]:
    """The stored runs among ``run_ids``, in that order; unknown ids are an error that names them."""
    rows = client.query(RUNS_SQL, parameters={"run_ids": run_ids}).result_rows
    found = {row[0]: RunRef(*row) for row in rows}
    unknown = [run_id for run_id in run_ids if run_id not in found]
    if unknown:
        raise UsageError(f"unknown run id(s): {', '.join(unknown)}")
    return {run_id: found[run_id] for run_id in run_ids}
