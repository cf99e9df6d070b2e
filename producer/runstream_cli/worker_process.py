"""Running the worker as a child process (the demo and the tests do), stopped with SIGTERM."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from runstream_core.errors import CommError
from runstream_worker.settings import WorkerSettings


def free_port(host: str) -> int:
    """A port free on ``host`` now, as the OS picks it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _reachable(host: str) -> str:
    """Where a local client reaches a server listening on ``host`` (a wildcard: loopback)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if host.strip("[]") == "::":
        return "::1"
    return host.strip("[]")


class WorkerProcess:
    """``runstream worker --migrate`` in a child process with the given settings; logs go to ``log_path``.

    The worker always serves its probe: on the settings' ``worker_metrics_port``, or when that is 0
    on a free port picked here and handed over in the child's environment (``probe_port``)."""

    def __init__(self, settings: WorkerSettings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.probe_port = settings.worker_metrics_port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def probe_url(self) -> str:
        host = _reachable(self.settings.worker_metrics_host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.probe_port}"

    def start(self) -> WorkerProcess:
        self.probe_port = self.settings.worker_metrics_port or free_port(self.settings.worker_metrics_host)
        env = {
            **os.environ,
            **self.settings.as_env(),
            "RUNSTREAM_WORKER_METRICS_PORT": str(self.probe_port),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "runstream_cli.main", "worker", "--migrate"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return self

    def ready(self) -> bool:
        """Whether the worker's probe answers ``/ready`` with 200 (topics exist, partitions assigned)."""
        try:
            with urllib.request.urlopen(f"{self.probe_url}/ready", timeout=2) as response:  # noqa: S310 - http only
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):  # 503 (an HTTPError), refused, not listening yet
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> WorkerProcess:
        """Wait until the worker's topics exist and its consumer has joined the group (its ``/ready``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise CommError(f"worker exited during start (code {self.returncode}): {self.log_text()[-2000:]}")
            if self.ready():
                return self
            time.sleep(0.2)
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
