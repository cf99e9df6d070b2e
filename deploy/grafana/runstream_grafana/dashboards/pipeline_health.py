"""Pipeline health (platform admins): what the workers ingest, how far behind they are, what fails.

Read from ``pipeline_health``: one row per worker per reporting interval.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common

from runstream_grafana.dashboards.panels import with_query
from runstream_grafana.dashboards.variables import datasource_variable, in_variable, option_columns, query_variable

UID = "runstream-pipeline-health"

_WORKERS = f"{in_variable('worker', 'worker')} AND $__timeFilter(ts)"


def _worker_variable() -> dash.QueryVariable:
    return query_variable(
        "worker",
        "Workers",
        f"SELECT DISTINCT {option_columns('worker')} FROM pipeline_health WHERE $__timeFilter(ts) ORDER BY text",
        multi=True,
    )


def _ingest_rate() -> timeseries.Panel:
    return with_query(
        timeseries.Panel(),
        "Ingest rate",
        f"""
        SELECT time, sum(points_rate) AS points_per_s, sum(records_rate) AS records_per_s,
               sum(hardware_rate) AS hardware_readings_per_s
        FROM (
            SELECT $__timeInterval(ts) AS time, worker,
                   sum(points) / sum(interval_s) AS points_rate,
                   sum(records) / sum(interval_s) AS records_rate,
                   sum(hardware_readings) / sum(interval_s) AS hardware_rate
            FROM pipeline_health
            WHERE {_WORKERS}
            GROUP BY time, worker
        )
        GROUP BY time
        ORDER BY time
        """,
        description="Metric points, Kafka records and hardware readings written per second, all workers.",
        time_series=True,
    ).unit("short")


def _consumer_lag() -> timeseries.Panel:
    return with_query(
        timeseries.Panel(),
        "Consumer lag",
        f"""
        SELECT $__timeInterval(ts) AS time, worker, max(consumer_lag) AS lag
        FROM pipeline_health
        WHERE {_WORKERS}
        GROUP BY time, worker
        ORDER BY time, worker
        """,
        description="Records in Kafka not yet written to ClickHouse, per worker (the largest in each interval).",
        time_series=True,
    ).unit("short")


def _dead_letters_total() -> stat.Panel:
    return with_query(
        stat.Panel().graph_mode(common.BigValueGraphMode.NONE),
        "Dead letters in range",
        f"""
        SELECT sum(dead_letters) AS dead_letters, sum(replays) AS replays, sum(crashed_runs) AS crashed_runs
        FROM pipeline_health
        WHERE {_WORKERS}
        """,
        description="Records that could not be decoded or written (sent to the dead-letter topic), replayed "
        "records dropped as duplicates, and runs marked crashed.",
        width=6,
    )


def _dead_letters() -> timeseries.Panel:
    return with_query(
        timeseries.Panel().draw_style(common.GraphDrawStyle.BARS),
        "Dead letters",
        f"""
        SELECT $__timeInterval(ts) AS time, sum(dead_letters) AS dead_letters
        FROM pipeline_health
        WHERE {_WORKERS}
        GROUP BY time
        ORDER BY time
        """,
        description="Dead letters per interval, all workers.",
        time_series=True,
        width=18,
    ).unit("short")


def _batch_latency() -> timeseries.Panel:
    return with_query(
        timeseries.Panel(),
        "Batch latency",
        f"""
        SELECT $__timeInterval(ts) AS time, avg(batch_p50_ms) AS p50_ms, max(batch_max_ms) AS max_ms
        FROM pipeline_health
        WHERE {_WORKERS}
        GROUP BY time
        ORDER BY time
        """,
        description="Time to write one batch to ClickHouse: median of the workers' medians, and the slowest.",
        time_series=True,
        width=24,
    ).unit("ms")


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("runstream: pipeline health")
        .uid(UID)
        .tags(["runstream", "admin"])
        .time("now-6h", "now")
        .refresh("30s")
        .readonly()
        .with_variable(datasource_variable())
        .with_variable(_worker_variable())
        .with_panel(_ingest_rate())
        .with_panel(_consumer_lag())
        .with_panel(_dead_letters_total())
        .with_panel(_dead_letters())
        .with_panel(_batch_latency())
    )
