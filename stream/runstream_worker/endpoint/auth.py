"""Who is asking: credentials read as ClickHouse's HTTP interface reads them, and checked.

ClickHouse accepts a user and password from HTTP basic auth, from the ``X-ClickHouse-User`` /
``X-ClickHouse-Key`` headers, or from the ``user`` / ``password`` URL parameters, one way per
request. No credentials is the user ``default`` with no password, which does not exist here:
``Code: 194`` (401). A wrong user or password is ``Code: 516`` (403), the same answer for both so
that user names cannot be probed. Passwords are kept as salted SHA-256 and compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from runstream_core.endpoint_users import TeamUser, read_users
from runstream_core.errors import UsageError
from runstream_core.log import get_logger
from runstream_worker.endpoint.errors import Code, EndpointError

log = get_logger("runstream.endpoint")


@dataclass(frozen=True)
class Principal:
    """A signed-in user: the endpoint's own user (``admin``, every row), or a team's user."""

    name: str
    admin: bool
    team: str | None = None


@dataclass(frozen=True)
class PasswordHash:
    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(16)
        return cls(salt, hashlib.sha256(salt + password.encode()).digest())

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(self.salt + password.encode()).digest(), self.digest)


def credentials(headers: Message, params: Mapping[str, str]) -> tuple[str, str] | None:
    """The request's (user, password), or None when it sends none."""
    found: list[tuple[str, str]] = []
    authorization = headers.get("Authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise EndpointError(Code.AUTHENTICATION_FAILED, f"Unsupported authentication scheme {scheme[:16]!r}")
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise EndpointError(Code.AUTHENTICATION_FAILED, "Malformed basic authentication") from exc
        if not sep:
            raise EndpointError(Code.AUTHENTICATION_FAILED, "Malformed basic authentication")
        found.append((user, password))
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        found.append((headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", "")))
    if "user" in params or "password" in params:
        found.append((params.get("user", "default"), params.get("password", "")))
    if len(found) > 1:
        raise EndpointError(
            Code.AUTHENTICATION_FAILED,
            "Invalid authentication: it is not allowed to use more than one of the Authorization header, "
            "the X-ClickHouse-User/Key headers and the user/password parameters",
        )
    return found[0] if found else None


class Authenticator:
    """Users and their passwords; ``authenticate`` returns the principal or raises.

    The endpoint's own user comes from settings; team users from ``users_file``, read again
    whenever it changes (a sync applies from the next request). A file that cannot be read signs
    no team user in: closed, never open.
    """

    def __init__(self, admin_user: str, admin_password: str, users_file: Path | None = None) -> None:
        self._admin = (admin_user, PasswordHash.of(admin_password), Principal(admin_user, admin=True))
        self._users_file = users_file
        self._seen: tuple[int, int] | None = None
        self._teams: dict[str, TeamUser] = {}
        self._lock = threading.Lock()
        self._decoy = PasswordHash.of(secrets.token_urlsafe(16))  # same work for unknown users
        self.generation = 0
        """Counts reloads of the users file: whatever was derived from the users is stale when it moves."""

    def _reload(self) -> None:
        if self._users_file is None:
            return
        try:
            stat = self._users_file.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen == self._seen and (seen is not None or not self._teams):
                return
            try:
                self._teams = read_users(self._users_file) if seen is not None else {}
            except UsageError as exc:
                log.error("team users not loaded: team users cannot sign in", error=str(exc))
                self._teams = {}
            self._seen = seen
            self.generation += 1

    def teams(self) -> list[str]:
        """The teams whose users can sign in now."""
        self._reload()
        return sorted(user.team for user in self._teams.values())

    def authenticate(self, given: tuple[str, str] | None) -> Principal:
        if given is None:
            raise EndpointError(
                Code.REQUIRED_PASSWORD,
                "default: Authentication failed: a user and password are required "
                "(HTTP basic auth, or the X-ClickHouse-User and X-ClickHouse-Key headers)",
            )
        user, password = given
        self._reload()
        principal: Principal | None = None
        if user == self._admin[0]:
            matched = self._admin[1].matches(password)
            principal = self._admin[2]
        elif (team_user := self._teams.get(user)) is not None:
            matched = team_user.matches(password)
            principal = Principal(team_user.name, admin=False, team=team_user.team)
        else:
            matched = self._decoy.matches(password)
        if not matched or principal is None:
            raise EndpointError(
                Code.AUTHENTICATION_FAILED,
                f"{user[:64]}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        return principal
