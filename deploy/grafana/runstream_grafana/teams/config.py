"""The ``teams.yaml`` model: teams, their Grafana members, and the platform admins."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runstream_core.errors import UsageError
from runstream_core.team_access import TEAM_NAME_PATTERN

GrafanaRole = Literal["Viewer", "Editor", "Admin"]


class TeamsConfigError(UsageError):
    """``teams.yaml`` cannot be read or does not match the model; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Strict):
    """A Grafana user of a team's organization."""

    login: str = Field(min_length=1, max_length=190)
    """Grafana login or email of an existing Grafana user."""

    role: GrafanaRole = "Viewer"
    """Organization role: Viewer, Editor or Admin."""


class Team(_Strict):
    name: str = Field(pattern=TEAM_NAME_PATTERN)
    """Value of the ``team`` column of the team's rows; lowercase letters, digits, underscores."""

    display_name: str = Field(min_length=1, max_length=190)
    """Name of the team's Grafana organization."""

    members: tuple[Member, ...] = ()

    @field_validator("members")
    @classmethod
    def _unique_members(cls, members: tuple[Member, ...]) -> tuple[Member, ...]:
        _reject_duplicates([m.login.lower() for m in members], "member login")
        return members


class TeamsConfig(_Strict):
    teams: tuple[Team, ...] = Field(min_length=1)
    platform_admins: tuple[str, ...] = ()
    """Grafana logins or emails that administer every organization and see the main org's admin dashboards."""

    @field_validator("platform_admins")
    @classmethod
    def _unique_admins(cls, admins: tuple[str, ...]) -> tuple[str, ...]:
        if any(not login.strip() for login in admins):
            raise ValueError("a platform admin login is empty")
        _reject_duplicates([a.lower() for a in admins], "platform admin")
        return admins

    @model_validator(mode="after")
    def _unique_teams(self) -> TeamsConfig:
        _reject_duplicates([t.name for t in self.teams], "team name")
        _reject_duplicates([t.display_name.lower() for t in self.teams], "team display_name")
        return self

    def team(self, name: str) -> Team:
        return next(t for t in self.teams if t.name == name)


def _reject_duplicates(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


def parse_teams(text: str, source: str = "teams.yaml") -> TeamsConfig:
    """Validate the YAML ``text``; errors name ``source`` and the field (``teams[1].name: ...``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TeamsConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TeamsConfigError(f"{source}: expected a mapping with a 'teams' list at the top level")
    try:
        return TeamsConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise TeamsConfigError(f"{source}: {problems}") from exc


def load_teams(path: Path) -> TeamsConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TeamsConfigError(f"cannot read teams file {path}: {exc.strerror or exc}") from exc
    return parse_teams(text, str(path))


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``("teams", 1, "name")`` -> ``teams[1].name``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"
