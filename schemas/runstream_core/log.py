"""Structured logging through the standard library, so applications keep control of handlers.

Loggers render ``event key=value ...`` (or JSON) and hand the line to ``logging``; the CLI and the
worker install a handler with :func:`configure`, a training script's own setup is left alone.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Hashable
from typing import Any

import structlog

_json = False


def _render(logger: Any, method: str, event_dict: structlog.typing.EventDict) -> str:
    if _json:
        return structlog.processors.JSONRenderer(sort_keys=True)(logger, method, event_dict)  # type: ignore[return-value]
    return structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)(logger, method, event_dict)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger writing to the stdlib logger ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.processors.format_exc_info, _render],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger


def configure(level: str = "INFO", fmt: str = "console") -> None:
    """Install one stderr handler on the root logger (used by the CLI and the worker)."""
    global _json
    _json = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    if _json:
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries narrate every connection at INFO; their warnings are what matter here.
    for noisy in ("kafka", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class WarnOnce:
    """Logs a warning the first time each ``kind`` is reported; later reports of it are dropped.

    Code that runs for days (a sampler, the transport, ``log()`` on bad input) must not flood the
    log with one line per recurrence: each kind of trouble is told once.
    """

    def __init__(self, logger: structlog.stdlib.BoundLogger) -> None:
        self._log = logger
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def __call__(self, kind: Hashable, event: str, **fields: Any) -> bool:
        """Logs ``event`` if ``kind`` is new; returns whether it did."""
        with self._lock:
            if kind in self._seen:
                return False
            self._seen.add(kind)
        self._log.warning(event, **fields)
        return True
