"""Credentials of the embedded engine's ClickHouse HTTP endpoint, for the endpoint and its clients.

The endpoint (the worker's, or ``runstream serve``) signs clients in as ``RUNSTREAM_HTTP_USER`` with
``RUNSTREAM_HTTP_PASSWORD``. When no password is configured and the endpoint listens on loopback, it
generates one at its first start and keeps it in ``<state_dir>/http_password`` (0600, folder 0700),
where local clients (``runstream.query``, the CLI, tests) find it through the same settings.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from runstream_core.errors import UsageError
from runstream_core.settings import ClickHouseSettings

PASSWORD_FILE = "http_password"  # noqa: S105 (a file name, not a password)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only reaches this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def password_path(settings: ClickHouseSettings) -> Path:
    return Path(settings.state_dir).expanduser() / PASSWORD_FILE


def private_dir(path: Path) -> Path:
    """``path`` created if missing, readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def generated_password(settings: ClickHouseSettings) -> str | None:
    """The password an endpoint generated earlier for these settings, if any."""
    try:
        return password_path(settings).read_text().strip() or None
    except OSError:
        return None


def endpoint_password(settings: ClickHouseSettings, host: str) -> tuple[str, Path | None]:
    """The password the endpoint on ``host`` requires, and the file it was kept in if generated.

    Raises ``UsageError`` for a non-loopback address without ``RUNSTREAM_HTTP_PASSWORD``: a network
    endpoint never starts open or with a password nobody was told.
    """
    configured = settings.http_password.get_secret_value()
    if configured:
        return configured, None
    if not is_loopback(host):
        raise UsageError(
            f"refusing to serve ClickHouse on {host}, which is not a loopback address, without a password: "
            "set RUNSTREAM_HTTP_PASSWORD (and RUNSTREAM_HTTP_USER), or listen on 127.0.0.1"
        )
    path = password_path(settings)
    existing = generated_password(settings)
    if existing:
        return existing, path
    private_dir(path.parent)
    password = secrets.token_urlsafe(24)
    tmp = path.with_name(f".{PASSWORD_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    os.replace(tmp, path)
    return password, path


def client_credentials(settings: ClickHouseSettings) -> tuple[str, str]:
    """User and password a client sends to an ``http(s)://`` ClickHouse DSN.

    ``RUNSTREAM_CLICKHOUSE_USER`` / ``RUNSTREAM_CLICKHOUSE_PASSWORD`` win when set (a ClickHouse
    server); otherwise the endpoint's own user, with its configured or generated password.
    """
    password = settings.clickhouse_password.get_secret_value()
    if settings.clickhouse_user != "default" or password:
        return settings.clickhouse_user, password
    endpoint = settings.http_password.get_secret_value() or generated_password(settings) or ""
    return settings.http_user, endpoint
