"""Warnings that are logged once per kind of trouble, however often the trouble recurs."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from runstream_core.log import get_logger

log = get_logger("runstream.hardware")


class WarnOnce:
    """Logs a warning the first time each ``kind`` is reported; later reports of it are dropped.

    A sampler runs every few seconds for days, so a repeating failure must not flood the log.
    """

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()

    def __call__(self, kind: Hashable, event: str, **fields: Any) -> None:
        if kind in self._seen:
            return
        self._seen.add(kind)
        log.warning(event, **fields)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for log fields (NVML errors have terse messages)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
