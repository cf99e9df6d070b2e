"""The worker's probe on a real socket: /ready follows readiness, /live always answers, /metrics signs in."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream_core.errors import UsageError
from runstream_worker.probe import Probe, Readiness
from runstream_worker.settings import WorkerSettings
from runstream_worker.stats import WorkerStats

PASSWORD = "probe-test-password"


def get(url: str, user: str | None = None, password: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(  # type: ignore[call-arg]
        _env_file=None, state_dir=tmp_path / "state", http_password=PASSWORD, worker_metrics_port=0
    )


@pytest.fixture
def served(settings: WorkerSettings) -> Iterator[tuple[Probe, Readiness, WorkerStats]]:
    stats, readiness = WorkerStats(), Readiness()
    probe = Probe.from_settings(settings, stats.registry(), readiness).start()
    yield probe, readiness, stats
    probe.stop()


def test_the_probe_listens_on_loopback_by_default(settings: WorkerSettings) -> None:
    assert settings.worker_metrics_host == "127.0.0.1"
    probe = Probe.from_settings(settings, WorkerStats().registry(), Readiness())
    try:
        assert probe.host == "127.0.0.1" and probe.port > 0
    finally:
        probe.stop()


def test_ready_once_the_topics_exist_and_partitions_are_assigned(
    served: tuple[Probe, Readiness, WorkerStats],
) -> None:
    probe, readiness, _ = served
    url = f"http://127.0.0.1:{probe.port}"
    assert get(f"{url}/live") == (200, "live\n")
    assert get(f"{url}/ready") == (503, "not ready\n")
    readiness.partitions_assigned()
    assert get(f"{url}/ready")[0] == 503
    readiness.topics_exist()
    assert get(f"{url}/ready") == (200, "ready\n")
    assert get(f"{url}/live") == (200, "live\n")
    assert get(f"{url}/elsewhere")[0] == 404


def test_metrics_need_the_endpoint_user(served: tuple[Probe, Readiness, WorkerStats]) -> None:
    probe, _, stats = served
    stats.dead_letter()
    url = f"http://127.0.0.1:{probe.port}/metrics"
    status, body = get(url)
    assert status == 401 and body.startswith("Code: 194.")
    assert get(url, "runstream", "wrong")[0] == 403
    assert get(url, "someone", PASSWORD)[0] == 403
    status, body = get(url, "runstream", PASSWORD)
    assert status == 200
    assert "runstream_worker_dead_letters_total 1.0" in body.splitlines()


def test_a_probe_beyond_loopback_needs_a_password(tmp_path: Path) -> None:
    settings = WorkerSettings(  # type: ignore[call-arg]
        _env_file=None, state_dir=tmp_path / "state", http_password="", worker_metrics_host="0.0.0.0"
    )
    with pytest.raises(UsageError, match="RUNSTREAM_HTTP_PASSWORD"):
        Probe.from_settings(settings, WorkerStats().registry(), Readiness())
