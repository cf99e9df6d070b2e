"""Stand-ins at the SDK's boundaries: kafka-python's producer (recording what it is sent) and a disk that fills."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runstream.settings import Settings
from runstream_core.columns import to_batch
from runstream_core.events import COLUMN_EVENTS, Event, MetricBatch, decode_event


def as_lists(event: Event) -> Event:
    """A v2 batch as the v1 batch of the same points (lists, a value per point), any other event as it is:
    what the tests read points from, whichever wire format the run sent."""
    return to_batch(event) if isinstance(event, COLUMN_EVENTS) else event


def decoded(payload: bytes) -> Event:
    """A record value decoded, points as lists (``as_lists``)."""
    return as_lists(decode_event(payload))


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> _Future:
        if self._error is None:
            fn(*args, None)
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> _Future:
        if self._error is not None:
            fn(*args, self._error)
        return self


class FakeSender:
    """Accepts records; ``fail_next`` makes that many deliveries fail (as a broker timeout would)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_next = 0
        self.closed = False
        self._lock = threading.Lock()

    def send(self, topic: str, value: bytes, key: bytes) -> _Future:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                return _Future(TimeoutError("delivery timed out"))
            self.sent.append((topic, key, value))
        return _Future(None)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def events(self) -> list[Event]:
        """The events sent, points as lists (``as_lists``)."""
        return [decoded(value) for _, _, value in self.sent]

    def wire_events(self) -> list[Event]:
        """The events sent, as they were on the wire."""
        return [decode_event(value) for _, _, value in self.sent]

    def points(self) -> list[tuple[str, int, float]]:
        """(key, step, value) of every metric point sent, in order."""
        out = []
        for event in self.events():
            if isinstance(event, MetricBatch):
                out.extend(zip(event.keys, event.steps, event.values, strict=True))
        return out


def factory_for(sender: FakeSender) -> Callable[[Settings], FakeSender]:
    return lambda settings: sender


class OutageSender(FakeSender):
    """A sender whose broker can be taken down: while ``down`` is set, connecting and sending fail."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()
        self.max_unsent_seen = 0

    def send(self, topic: str, value: bytes, key: bytes) -> _Future:
        if self.down.is_set():
            raise TimeoutError("broker unreachable")
        return super().send(topic, value, key)


def outage_factory(sender: OutageSender) -> Callable[[Settings], OutageSender]:
    def connect(settings: Settings) -> OutageSender:
        if sender.down.is_set():
            raise ConnectionRefusedError("no broker")
        return sender

    return connect


class BlockedSender(FakeSender):
    """A sender stuck on the network until ``release`` is set (a broker that never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, topic: str, value: bytes, key: bytes) -> _Future:
        self.entered.set()
        self.release.wait()
        return super().send(topic, value, key)


class DiskFillsUp:
    """``os.write`` on a disk with ``room`` bytes left: what fits is written, then ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), self.room)
        self.room -= n
        return os.write(fd, bytes(data[:n]))


def unit_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """The SDK's settings for a unit test: no env file, fast flushes, a private runs dir, no sampler and
    no SIGTERM handler; ``overrides`` on top."""
    fields: dict[str, Any] = {
        "flush_interval_s": 0.02,
        "finish_timeout_s": 10,
        "topic_prefix": "unit.",
        "runs_dir": tmp_path / "runs",
        "hardware_interval_s": 0,
        "handle_sigterm": False,
    }
    return Settings(_env_file=None, **{**fields, **overrides})  # type: ignore[call-arg]
