"""Grafana dashboards as code: built with grafana-foundation-sdk, written as provisioned JSON.

``runstream dashboards`` writes ``deploy/grafana/dashboards/{team,admin}/<uid>.json``;
``all_queries`` gives every panel's SQL expanded for a set of variables, to run outside Grafana;
variables are set to option values as Grafana stores them, ``option_value(text)``.
"""

from runstream_grafana.dashboards.catalog import DASHBOARDS, DashboardSpec
from runstream_grafana.dashboards.macros import ALL, option_value
from runstream_grafana.dashboards.queries import DashboardQuery, all_queries, dashboard_queries, variable_values
from runstream_grafana.dashboards.render import differences, render, rendered, write

__all__ = [
    "ALL",
    "DASHBOARDS",
    "DashboardQuery",
    "DashboardSpec",
    "all_queries",
    "dashboard_queries",
    "differences",
    "option_value",
    "render",
    "rendered",
    "variable_values",
    "write",
]
