"""The worker's probe: ``/metrics`` for Prometheus, ``/ready`` and ``/live`` for whoever runs it.

- ``/live``: 200 while the process serves at all.
- ``/ready``: 200 once the worker's topics exist and its consumer has had partitions assigned
  (it has joined its group), 503 until then. Tools that start a worker wait on it, never on a log line.
- ``/metrics``: the worker's stats in Prometheus's text format, for the endpoint's own user only
  (``RUNSTREAM_HTTP_USER`` / ``RUNSTREAM_HTTP_PASSWORD``, sent as the ClickHouse endpoint takes them).

``/ready`` and ``/live`` reveal nothing but a status, so they answer without credentials. The
probe listens on loopback unless ``RUNSTREAM_WORKER_METRICS_HOST`` says otherwise; another address
without a password configured stops the worker (``UsageError``), as for the ClickHouse endpoint.
"""

from __future__ import annotations

import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from runstream_core.credentials import endpoint_password
from runstream_core.log import get_logger
from runstream_worker.endpoint.auth import Authenticator, credentials
from runstream_worker.endpoint.errors import EndpointError
from runstream_worker.settings import WorkerSettings

log = get_logger("runstream.worker")

_TEXT = "text/plain; charset=utf-8"


class Readiness:
    """Whether the worker is ready: its topics exist and its partitions have been assigned."""

    def __init__(self) -> None:
        self._topics = threading.Event()
        self._assigned = threading.Event()

    def topics_exist(self) -> None:
        self._topics.set()

    def partitions_assigned(self) -> None:
        self._assigned.set()

    @property
    def ready(self) -> bool:
        return self._topics.is_set() and self._assigned.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], probe: Probe) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.probe = probe
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        probe = self.server.probe
        if url.path == "/live":
            self._reply(HTTPStatus.OK, b"live\n")
        elif url.path == "/ready":
            if probe.readiness.ready:
                self._reply(HTTPStatus.OK, b"ready\n")
            else:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"not ready\n")
        elif url.path == "/metrics":
            try:
                probe.auth.authenticate(credentials(self.headers, dict(parse_qsl(url.query))))
            except EndpointError as exc:
                self._reply(exc.status, exc.body(), {"WWW-Authenticate": 'Basic realm="runstream worker"'})
                return
            self._reply(HTTPStatus.OK, generate_latest(probe.registry), {"Content-Type": CONTENT_TYPE_LATEST})
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found: /metrics, /ready and /live are served here\n")

    def _reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": _TEXT, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scraped every few seconds: not worth a log line each


class Probe:
    """Serves ``/metrics``, ``/ready`` and ``/live`` on ``host:port`` (0: a free port) in a thread."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness, auth: Authenticator
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        self.auth = auth
        self._server = _Server((host, port), self)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: WorkerSettings, registry: CollectorRegistry, readiness: Readiness) -> Probe:
        """On ``worker_metrics_host:worker_metrics_port``, signing in the endpoint's user.

        Raises ``UsageError`` for a non-loopback host without ``RUNSTREAM_HTTP_PASSWORD``, and
        ``OSError`` when the port is taken."""
        password, _ = endpoint_password(settings, settings.worker_metrics_host)
        auth = Authenticator(settings.http_user, password)
        return cls(settings.worker_metrics_host, settings.worker_metrics_port, registry, readiness, auth)

    def start(self) -> Probe:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="worker-probe", daemon=True
        )
        self._thread.start()
        log.info("probe served", host=self.host, port=self.port, paths="/metrics /ready /live")
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
