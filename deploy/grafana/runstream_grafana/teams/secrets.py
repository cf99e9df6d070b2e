"""Passwords for ``teams sync``, never in the repository.

Each team's ClickHouse password comes from ``RUNSTREAM_TEAM_<NAME>_CLICKHOUSE_PASSWORD``, in the
environment or in a secrets file (YAML mapping or ``.env`` lines, keyed by those same names; the
environment wins). The Grafana admin credentials come from the settings. Everything is resolved
before anything is changed, and every missing name is reported at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from dotenv import dotenv_values
from pydantic import SecretStr

from runstream_core.errors import UsageError
from runstream_grafana.settings import GrafanaSettings
from runstream_grafana.teams.config import TeamsConfig


class MissingSecretError(UsageError):
    """A password ``teams sync`` needs is not set, or the secrets file cannot be read."""


@dataclass(frozen=True)
class SyncSecrets:
    clickhouse_passwords: Mapping[str, SecretStr]
    """Team name -> password of its ClickHouse user."""

    grafana_user: str
    grafana_password: SecretStr
    """Empty when Grafana is not configured: the sync then does the ClickHouse side only."""

    @property
    def grafana(self) -> bool:
        return bool(self.grafana_password.get_secret_value())

    def clickhouse_password(self, team: str) -> str:
        return self.clickhouse_passwords[team].get_secret_value()


def password_variable(team: str) -> str:
    return f"RUNSTREAM_TEAM_{team.upper()}_CLICKHOUSE_PASSWORD"


def read_secrets_file(path: Path) -> dict[str, str]:
    """``KEY: value`` YAML (``.yaml``/``.yml``) or ``KEY=value`` lines (any other name; ``$`` is kept as is)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MissingSecretError(f"cannot read secrets file {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise MissingSecretError(f"secrets file {path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise MissingSecretError(f"secrets file {path}: expected a mapping of NAME: password")
        return {str(k): str(v) for k, v in data.items() if v is not None}
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items() if v is not None}


def resolve_secrets(
    config: TeamsConfig,
    settings: GrafanaSettings,
    *,
    secrets_file: Path | None = None,
    environ: Mapping[str, str],
) -> SyncSecrets:
    """Every password ``config`` needs, or :class:`MissingSecretError` naming all that are missing.

    ``secrets_file`` (``--secrets``) wins over ``settings.teams_secrets_file``.
    """
    path = secrets_file or settings.teams_secrets_file
    from_file = read_secrets_file(path) if path else {}
    passwords: dict[str, SecretStr] = {}
    missing: list[str] = []
    for team in config.teams:
        name = password_variable(team.name)
        value = environ.get(name) or from_file.get(name)
        if value:
            passwords[team.name] = SecretStr(value)
        else:
            missing.append(name)
    if missing:
        where = f"the environment or {path}" if path else "the environment (or a --secrets file)"
        raise MissingSecretError(f"missing secrets, set them in {where}: {', '.join(missing)}")
    return SyncSecrets(passwords, settings.grafana_user, settings.grafana_password)
