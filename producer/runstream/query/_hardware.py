"""``hardware()``: a run's hardware readings per minute, from the ``hardware_minute`` rollup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from runstream.query._deps import pandas
from runstream.query._frames import utc_times
from runstream.query._lookup import find_runs, run_id_list
from runstream_core.errors import UsageError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from pandas import DataFrame

COLUMNS = ("minute", "host", "key", "device", "mean", "min", "max")

KEYS_SQL = """
SELECT DISTINCT key FROM hardware_minute
WHERE team = {team:String} AND project = {project:String} AND run_id = {run_id:String}
ORDER BY key
"""

MINUTES_SQL = """
SELECT toUnixTimestamp(minute) * 1000 AS minute_ms, host, key, device,
       sum(sum_value) / sum(samples) AS mean, min(min_value) AS min, max(max_value) AS max
FROM hardware_minute
WHERE team = {team:String} AND project = {project:String} AND run_id = {run_id:String}
  AND key IN {keys:Array(String)}
GROUP BY minute, host, key, device
ORDER BY key, device, host, minute
"""


def read_hardware(client: Client, run_id: str, keys: str | Iterable[str] | None = None) -> DataFrame:
    """See :func:`runstream.query.hardware`."""
    pd = pandas()
    if not isinstance(run_id, str):
        raise UsageError(f"run_id must be one run id (a string), got {run_id!r}")
    run = find_runs(client, run_id_list(run_id))[run_id]
    scope = {"team": run.team, "project": run.project, "run_id": run_id}
    stored = [row[0] for row in client.query(KEYS_SQL, parameters=scope).result_rows]
    if keys is None:
        wanted = stored
    else:
        wanted = [keys] if isinstance(keys, str) else list(dict.fromkeys(keys))
        if not wanted:
            raise UsageError("keys is empty: give hardware keys such as 'gpu.utilization_percent', or None for all")
        unknown = [key for key in wanted if key not in stored]
        if unknown:
            raise UsageError(f"run {run_id} has no hardware key(s) {unknown}; it has {stored}")
    rows = client.query(MINUTES_SQL, parameters={**scope, "keys": wanted}).result_rows if wanted else []
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["minute"] = utc_times([row[0] for row in rows])
    return frame.astype({"mean": "float64", "min": "float64", "max": "float64"})
