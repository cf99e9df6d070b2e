"""Running the worker as a child process (the demo and the tests do), stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from runstream_core import kafka
from runstream_core.errors import CommError
from runstream_worker.settings import WorkerSettings

ASSIGNED_LINE = "partitions assigned"  # in console and JSON log lines alike


class WorkerProcess:
    """``runstream worker --migrate`` in a child process with the given settings; logs go to ``log_path``."""

    def __init__(self, settings: WorkerSettings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "runstream_cli.main", "worker", "--migrate"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> WorkerProcess:
        """Wait until the worker's topics exist and its consumer has joined the group."""
        from kafka.errors import KafkaError

        wanted = set(self.settings.topics.all())
        deadline = time.monotonic() + timeout_s
        admin = kafka.admin(self.settings, client_id="runstream-ready")
        try:
            while time.monotonic() < deadline:
                if not self.running():
                    raise CommError(f"worker exited during start (code {self.returncode}): {self.log_text()[-2000:]}")
                try:
                    if ASSIGNED_LINE in self.log_text() and wanted <= set(admin.list_topics()):
                        return self
                except KafkaError:
                    pass
                time.sleep(0.2)
        finally:
            admin.close()
        raise CommError(f"worker not ready after {timeout_s:.0f}s: {self.log_text()[-2000:]}")

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for a clean exit (flush + commit), SIGKILL if it overstays. Returns the exit code."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL: no flush, no commit (used to test recovery)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self.start().wait_ready()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
