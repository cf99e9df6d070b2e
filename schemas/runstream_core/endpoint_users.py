"""Team users of the endpoint: written by ``runstream teams sync``, read by the endpoint.

The embedded engine has no user directory it can write, so for a ``chdb://`` store the users live in
``<state_dir>/http_users.json`` (0600, folder 0700): one entry per team, its password kept only as
a salted SHA-256 (as ClickHouse's ``sha256_password`` keeps it). The endpoint reads the file again
whenever it changes, so a sync takes effect on the next request, while the worker runs; a team
removed from ``teams.yaml`` loses its user at the next sync.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runstream_core.credentials import private_dir
from runstream_core.errors import UsageError
from runstream_core.settings import ClickHouseSettings
from runstream_core.team_access import check_team_name, team_user

USERS_FILE = "http_users.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TeamUser:
    """A team's user: its name (``team_<team>``), its team, and its salted password hash."""

    name: str
    team: str
    salt: str
    sha256: str

    @classmethod
    def create(cls, team: str, password: str) -> TeamUser:
        if not password:
            raise UsageError(f"empty ClickHouse password for team {team!r}")
        salt = secrets.token_hex(16)
        return cls(team_user(team), check_team_name(team), salt, _digest(salt, password))

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(_digest(self.salt, password), self.sha256)


def _digest(salt: str, password: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + password.encode()).hexdigest()


def users_path(settings: ClickHouseSettings) -> Path:
    return Path(settings.state_dir).expanduser() / USERS_FILE


def write_users(path: Path, users: Iterable[TeamUser]) -> None:
    """Replaces the file atomically (readable by its owner only)."""
    private_dir(path.parent)
    body = {
        "version": FORMAT_VERSION,
        "users": [{"name": u.name, "team": u.team, "salt": u.salt, "sha256": u.sha256} for u in users],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_users(path: Path) -> dict[str, TeamUser]:
    """The users in ``path`` by name; none when it does not exist. A malformed file is an error."""
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the endpoint's users from {path}: {exc}") from exc
    if not isinstance(body, dict) or body.get("version") != FORMAT_VERSION or not isinstance(body.get("users"), list):
        raise UsageError(f"{path} is not a runstream users file (version {FORMAT_VERSION})")
    users: dict[str, TeamUser] = {}
    for entry in body["users"]:
        try:
            user = TeamUser(str(entry["name"]), str(entry["team"]), str(entry["salt"]), str(entry["sha256"]))
            bytes.fromhex(user.salt)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: malformed user entry") from exc
        if user.name != team_user(user.team):
            raise UsageError(f"{path}: user {user.name!r} does not belong to team {user.team!r}")
        users[user.name] = user
    return users
