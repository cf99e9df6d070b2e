"""Starting the worker as a child process: its probe on a port the OS picked, readiness from /ready."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from runstream_cli.worker_process import WorkerProcess
from runstream_core.errors import CommError
from runstream_worker.settings import WorkerSettings
from tests.fixtures.kafka import free_port


def test_a_worker_that_cannot_make_its_topics_is_live_but_never_ready(tmp_path: Path) -> None:
    settings = WorkerSettings(  # type: ignore[call-arg]
        _env_file=None,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens there
        clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
        state_dir=tmp_path / "state",
        worker_http_port=0,
    )
    assert settings.worker_metrics_port == 0
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        assert worker.probe_port > 0
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{worker.probe_url}/live", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert worker.running(), worker.log_text()
                assert time.monotonic() < deadline, worker.log_text()
                time.sleep(0.2)
        assert not worker.ready()
        with pytest.raises(CommError, match="worker not ready after 1s"):
            worker.wait_ready(timeout_s=1)
        assert "partitions assigned" not in worker.log_text()
    finally:
        worker.stop()
