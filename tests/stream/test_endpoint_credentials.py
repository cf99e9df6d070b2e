"""The endpoint's password: configured, or generated private on loopback; never open on a network."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runstream_core.credentials import client_credentials, endpoint_password, is_loopback, password_path
from runstream_core.errors import UsageError
from runstream_worker.main import serve_embedded
from tests.fixtures.settings import StackSettings as Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, state_dir=tmp_path / "state", **values)  # type: ignore[arg-type]


def test_a_password_is_generated_once_private_and_read_by_local_clients(tmp_path: Path) -> None:
    config = settings(tmp_path)
    password, kept_in = endpoint_password(config, "127.0.0.1")
    assert kept_in == password_path(config) == tmp_path / "state" / "http_password"
    assert len(password) >= 24
    assert stat.S_IMODE(kept_in.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept_in.parent.stat().st_mode) == 0o700
    assert endpoint_password(config, "::1") == (password, kept_in)  # the same on the next start
    client = settings(tmp_path, clickhouse_url="http://127.0.0.1:8123")
    assert client_credentials(client) == ("runstream", password)
    # A ClickHouse server's own credentials win when they are given.
    server = settings(tmp_path, clickhouse_user="analyst", clickhouse_password="s3cret")
    assert client_credentials(server) == ("analyst", "s3cret")


def test_a_configured_password_wins_and_nothing_is_written(tmp_path: Path) -> None:
    config = settings(tmp_path, http_password="configured", http_user="grafana")
    assert endpoint_password(config, "127.0.0.1") == ("configured", None)
    assert not (tmp_path / "state").exists()
    assert client_credentials(config) == ("grafana", "configured")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "worker.internal"])
def test_no_network_address_without_a_password(tmp_path: Path, host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UsageError, match="RUNSTREAM_HTTP_PASSWORD"):
        endpoint_password(settings(tmp_path), host)
    worker = settings(
        tmp_path, clickhouse_url=f"chdb://{tmp_path / 'db'}", worker_http_host=host, worker_http_port=18999
    )
    with pytest.raises(UsageError, match="not a loopback address"):
        serve_embedded(worker)
    assert not (tmp_path / "state" / "http_password").exists()


def test_runstream_serve_refuses_a_network_address_without_a_password(tmp_path: Path) -> None:
    env = {"RUNSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}", "RUNSTREAM_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin", **env},
    )  # fmt: skip
    assert result.returncode == 1
    assert "RUNSTREAM_HTTP_PASSWORD" in result.stderr


def test_runstream_serve_is_read_only_unless_writable(tmp_path: Path) -> None:
    """``runstream serve`` without ``--writable`` refuses DDL, by POST as by GET."""
    from tests.fixtures.endpoint import Endpoint, client_settings
    from tests.fixtures.pipeline import ServedClickHouse

    served = ServedClickHouse(tmp_path / "db", tmp_path / "serve.log", writable=False).start()
    try:
        endpoint = Endpoint(served.port, client_settings(served.url, tmp_path / "state"))
        for method in ("POST", "GET"):
            reply = endpoint.request(
                "CREATE TABLE t (a UInt8) ENGINE = Memory" if method == "POST" else None,
                {} if method == "POST" else {"query": "CREATE TABLE t (a UInt8) ENGINE = Memory"},
                method=method,
            )
            assert (reply.code, reply.status) == ("164", 500), reply.text
        assert endpoint.query("EXISTS TABLE t") == "0\n"
    finally:
        served.stop()
