"""Grafana tooling's settings: the Grafana it manages, and the ClickHouse target its datasources read."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from runstream_core.settings import ClickHouseSettings, LoggingSettings


class GrafanaSettings(ClickHouseSettings, LoggingSettings):
    """Configuration of ``runstream dashboards`` and ``runstream teams sync``."""

    grafana_url: str = "http://127.0.0.1:3000"
    """Grafana that ``runstream teams sync`` manages (RUNSTREAM_GRAFANA_URL)."""

    grafana_user: str = "admin"
    """Grafana server admin that ``runstream teams sync`` signs in as (RUNSTREAM_GRAFANA_USER)."""

    grafana_password: SecretStr = SecretStr("")
    """Password of that Grafana admin (RUNSTREAM_GRAFANA_PASSWORD); never logged."""

    grafana_clickhouse_url: str | None = None
    """ClickHouse URL as Grafana reaches it, for the team datasources ``runstream teams sync``
    writes, e.g. ``http://clickhouse:8123`` inside docker compose; unset: ``clickhouse_url``
    (RUNSTREAM_GRAFANA_CLICKHOUSE_URL)."""

    teams_secrets_file: Path | None = None
    """YAML or ``.env``-style file with the teams' ClickHouse passwords for ``runstream teams sync``
    (RUNSTREAM_TEAMS_SECRETS_FILE); the environment wins over it."""
