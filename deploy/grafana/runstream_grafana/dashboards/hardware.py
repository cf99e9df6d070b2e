"""Hardware: GPU and host readings per run and host over time, and GPUs held but idle.

Curves come from the per-minute rollup ``hardware_minute``; when Grafana's interval is under a
minute (a short time range) they come from raw ``hardware`` rows instead, so zooming in shows every
sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table, timeseries

from runstream_core import hardware_keys as hw
from runstream_grafana.dashboards.panels import with_query
from runstream_grafana.dashboards.variables import (
    datasource_variable,
    in_variable,
    option_columns,
    project_variable,
    query_variable,
    run_variable,
    team_and_project,
    team_variable,
)

UID = "runstream-hardware"
IDLE_UTILIZATION_PERCENT = 10
IDLE_MINUTES = 10

_CHOSEN = f"{team_and_project()} AND {in_variable('run_id', 'run')} AND {in_variable('host', 'host')}"


@dataclass(frozen=True)
class Reading:
    title: str
    key: str
    unit: str
    per_gpu: bool


READINGS = (
    Reading("GPU utilization", hw.GPU_UTILIZATION_PERCENT, "percent", per_gpu=True),
    Reading("GPU memory used", hw.GPU_MEMORY_USED_BYTES, "bytes", per_gpu=True),
    Reading("GPU power", hw.GPU_POWER_WATTS, "watt", per_gpu=True),
    Reading("GPU temperature", hw.GPU_TEMPERATURE_C, "celsius", per_gpu=True),
    Reading("CPU", hw.CPU_PERCENT, "percent", per_gpu=False),
    Reading("RAM used", hw.MEMORY_USED_BYTES, "bytes", per_gpu=False),
)


def _host_variable() -> dash.QueryVariable:
    return query_variable(
        "host",
        "Hosts",
        f"""SELECT DISTINCT {option_columns("host")} FROM hardware_minute
WHERE {team_and_project()} AND {in_variable("run_id", "run")} AND $__timeFilter(minute)
ORDER BY text""",
        multi=True,
    )


def _reading_panel(reading: Reading) -> timeseries.Panel:
    series = "concat(run_id, ' ', host, ' ', device)" if reading.per_gpu else "concat(run_id, ' ', host)"
    return with_query(
        timeseries.Panel(),
        reading.title,
        f"""
        SELECT time, series, value
        FROM (
            SELECT $__timeInterval(ts) AS time, {series} AS series, avg(value) AS value
            FROM hardware
            WHERE $__interval_s < 60 AND key = '{reading.key}' AND {_CHOSEN} AND $__timeFilter(ts)
            GROUP BY time, series
            UNION ALL
            SELECT $__timeInterval(minute) AS time, {series} AS series, sum(sum_value) / sum(samples) AS value
            FROM hardware_minute
            WHERE $__interval_s >= 60 AND key = '{reading.key}' AND {_CHOSEN} AND $__timeFilter(minute)
            GROUP BY time, series
        )
        ORDER BY time, series
        """,
        description=f"{reading.key}, mean per interval, one curve per "
        + ("run, host and GPU." if reading.per_gpu else "run and host."),
        time_series=True,
    ).unit(reading.unit)


def _idle_gpus() -> table.Panel:
    return with_query(
        table.Panel(),
        f"Idle GPUs: under {IDLE_UTILIZATION_PERCENT}% for the last {IDLE_MINUTES} minutes",
        f"""
        SELECT h.run_id AS run_id, r.name AS run, r.user AS user, h.host AS host, h.device AS device,
               round(max(h.value), 1) AS max_utilization, round(avg(h.value), 1) AS mean_utilization,
               count() AS samples
        FROM hardware AS h
        INNER JOIN (
            SELECT run_id, name, user FROM run_table WHERE {team_and_project()} AND status = 'running'
        ) AS r ON h.run_id = r.run_id
        WHERE {team_and_project("h")} AND h.key = '{hw.GPU_UTILIZATION_PERCENT}'
          AND h.ts >= now() - INTERVAL {IDLE_MINUTES} MINUTE
        GROUP BY run_id, run, user, host, device
        -- Readings since the start of the window: the GPU was held, and idle, the whole time.
        HAVING max(h.value) < {IDLE_UTILIZATION_PERCENT} AND min(h.ts) <= now() - INTERVAL {IDLE_MINUTES - 1} MINUTE
        ORDER BY run_id, host, device
        """,
        description="GPUs of running runs that stayed under the threshold for the whole window, whatever the "
        "time range: release them or fix the input pipeline.",
        width=24,
        height=6,
    )


def build() -> dash.Dashboard:
    board = (
        dash.Dashboard("runstream: hardware")
        .uid(UID)
        .tags(["runstream", "team"])
        .time("now-3h", "now")
        .refresh("1m")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(team_variable())
        .with_variable(project_variable())
        .with_variable(run_variable())
        .with_variable(_host_variable())
        .with_panel(_idle_gpus())
    )
    for reading in READINGS:
        board = board.with_panel(_reading_panel(reading))
    return board
