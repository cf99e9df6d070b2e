"""Grafana dashboards as code: built with grafana-foundation-sdk, written as provisioned JSON.

``runstream dashboards`` writes ``deploy/grafana/dashboards/{team,admin}/<uid>.json``;
``dashboard_queries`` lists every panel's and variable's SQL as stored (the tests expand and run
them with an emulator of Grafana and its plugin, tests/grafana/emulator.py). Variables hold option
values as Grafana stores them, ``option_value(text)``.
"""

from runstream_grafana.dashboards.catalog import DASHBOARDS, DashboardSpec
from runstream_grafana.dashboards.queries import DashboardQuery, dashboard_queries
from runstream_grafana.dashboards.render import differences, render, rendered, write
from runstream_grafana.dashboards.variables import ALL, ALL_VALUE, option_value

__all__ = [
    "ALL",
    "ALL_VALUE",
    "DASHBOARDS",
    "DashboardQuery",
    "DashboardSpec",
    "dashboard_queries",
    "differences",
    "option_value",
    "render",
    "rendered",
    "write",
]
