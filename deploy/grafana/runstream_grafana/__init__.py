"""Grafana tooling: dashboards generated from code, and per-team isolation (``runstream teams sync``)."""
