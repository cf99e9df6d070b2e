"""The hardware sampler's warnings, each logged once per kind of trouble however often it recurs."""

from __future__ import annotations

from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.hardware")


def warn_once() -> WarnOnce:
    """A fresh once-per-kind warner on the hardware logger."""
    return WarnOnce(log)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for log fields (NVML errors have terse messages)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
