"""Grafana dashboards as code: built with grafana-foundation-sdk, written as provisioned JSON.

``runstream dashboards`` writes ``deploy/grafana/dashboards/{team,admin}/<uid>.json``;
``all_queries`` gives every panel's SQL expanded for a set of variables, to run outside Grafana.
"""

from runstream_worker.dashboards.catalog import DASHBOARDS, DashboardSpec
from runstream_worker.dashboards.queries import DashboardQuery, all_queries, dashboard_queries
from runstream_worker.dashboards.render import differences, render, rendered, write

__all__ = [
    "DASHBOARDS",
    "DashboardQuery",
    "DashboardSpec",
    "all_queries",
    "dashboard_queries",
    "differences",
    "render",
    "rendered",
    "write",
]
