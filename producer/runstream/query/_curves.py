"""``curves()``: metric curves of a few runs, downsampled from the ``metric_buckets`` rollup.

The rule is the dashboards' one: raw ``metrics`` rows when every curve has at most ``points`` of
them, else the finest bucket level (16**level steps per bucket, level 1..4) with at most ``points``
buckets per curve. A bucket is drawn at its middle step (capped at the last step logged), with the
mean, min and max of its points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runstream.query._deps import pandas
from runstream.query._lookup import RunRef, find_runs, run_id_list
from runstream_core.buckets import COARSEST, finest_level, steps_per_bucket
from runstream_core.errors import UsageError
from runstream_core.log import get_logger

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from pandas import DataFrame

log = get_logger(__name__)

COLUMNS = ("run_id", "step", "value", "min", "max")
MIN_POINTS = 2

# Per run: how many points the key has and its last step, from the run summary rollup.
EXTENT_SQL = """
SELECT run_id, key, sum(points) AS points, max(last_step) AS last_step
FROM metric_summary
WHERE team IN {teams:Array(String)} AND project IN {projects:Array(String)} AND run_id IN {run_ids:Array(String)}
GROUP BY run_id, key
"""

RAW_SQL = """
SELECT run_id, step, value, value AS min, value AS max
FROM metrics
WHERE team IN {teams:Array(String)} AND project IN {projects:Array(String)} AND run_id IN {run_ids:Array(String)}
  AND key = {key:String}
ORDER BY run_id, step
"""

BUCKETS_SQL = """
SELECT run_id,
       intDiv(merged * {width:Int64} + least((merged + 1) * {width:Int64} - 1, max(last_step)), 2) AS step,
       sum(sum_value) / sum(points) AS value,
       min(min_value) AS min,
       max(max_value) AS max
FROM metric_buckets
WHERE team IN {teams:Array(String)} AND project IN {projects:Array(String)} AND run_id IN {run_ids:Array(String)}
  AND key = {key:String} AND level = {level:UInt8}
GROUP BY run_id, intDiv(bucket, {merge:Int64}) AS merged
ORDER BY run_id, step
"""


@dataclass(frozen=True)
class CurvePlan:
    """Where a curve is read from: raw points (level 0) or one bucket level, whose buckets are
    merged ``merge`` at a time only past the coarsest level (curves over ``points * 65536`` steps)."""

    level: int
    merge: int = 1


def plan_curve(points: int, last_step: int, target: int) -> CurvePlan:
    """The plan that draws curves of at most ``points`` rows ending at ``last_step`` (steps from 0)
    in at most ``target`` rows each."""
    if points <= target:
        return CurvePlan(level=0)
    steps = last_step + 1
    level = finest_level(steps, target)
    if level is not None:
        return CurvePlan(level=level)
    coarsest = math.ceil(steps / steps_per_bucket(COARSEST))
    return CurvePlan(level=COARSEST, merge=math.ceil(coarsest / target))


def check_request(key: str, points: int) -> None:
    """Arguments checked before any query, so that mistakes fail fast and say what to pass."""
    if not isinstance(key, str) or not key:
        raise UsageError(f"key must be a metric key such as 'loss', got {key!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < MIN_POINTS:
        raise UsageError(f"points must be an integer of at least {MIN_POINTS}, got {points!r}")


def read_curves(client: Client, run_ids: str | Iterable[str], key: str, points: int = 1000) -> DataFrame:
    """See :func:`runstream.query.curves`."""
    pandas()  # a missing extra fails before any query
    check_request(key, points)
    return curves_of(client, find_runs(client, run_id_list(run_ids)), key, points)


def curves_of(client: Client, runs: dict[str, RunRef], key: str, points: int) -> DataFrame:
    """The curves of ``key`` for ``runs`` (checked to exist), at most ``points`` rows per run."""
    scope = _scope(runs)
    extents = client.query(EXTENT_SQL, parameters=scope).result_rows
    with_key = {run_id: (n, last) for run_id, k, n, last in extents if k == key}
    if not with_key:
        keys = sorted({k for _, k, _, _ in extents})
        raise UsageError(f"no metric {key!r} in run(s) {', '.join(runs)}; their metrics: {keys}")
    missing = [run_id for run_id in runs if run_id not in with_key]
    if missing:
        log.warning("runs without this metric are left out", key=key, run_ids=missing)
    plan = plan_curve(max(n for n, _ in with_key.values()), max(last for _, last in with_key.values()), target=points)
    log.debug("curve plan", key=key, runs=len(with_key), level=plan.level, merge=plan.merge)
    return read_plan(client, runs, key, plan)


def read_plan(client: Client, runs: dict[str, RunRef], key: str, plan: CurvePlan) -> DataFrame:
    """The curves of ``runs`` read as ``plan`` says, in the order of ``runs``."""
    pd = pandas()
    parameters: dict[str, Any] = {**_scope(runs), "key": key}
    if plan.level == 0:
        sql = RAW_SQL
    else:
        sql = BUCKETS_SQL
        width = steps_per_bucket(plan.level) * plan.merge
        parameters.update(level=plan.level, merge=plan.merge, width=width)
    order = {run_id: i for i, run_id in enumerate(runs)}
    rows = sorted(client.query(sql, parameters=parameters).result_rows, key=lambda row: (order[row[0]], row[1]))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"run_id": "str", "step": "int64", "value": "float64", "min": "float64", "max": "float64"})


def _scope(runs: dict[str, RunRef]) -> dict[str, Any]:
    # Team and project lead every sort key: naming them lets ClickHouse skip other teams' ranges.
    return {
        "teams": sorted({ref.team for ref in runs.values()}),
        "projects": sorted({ref.project for ref in runs.values()}),
        "run_ids": list(runs),
    }
