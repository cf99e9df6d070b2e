"""Process-wide hooks that end runs properly: SIGTERM and uncaught exceptions.

SIGTERM: every active run is marked killed and flushed, then the signal goes on to whatever
handler was installed before (the default one terminates the process as usual). A handler that
arrives while the main thread is inside a runstream call waits for that call to return, so the
flush never runs on top of a half-done append.
Uncaught exceptions: the run that ``atexit`` then finishes is marked failed, as W&B does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from runstream_core.log import get_logger

log = get_logger("runstream.signals")

_lock = threading.Lock()
_on_term: list[Callable[[], None]] = []
_previous: Any = None
_installed = False
_uncaught = False
_pending_signal: tuple[int, FrameType | None] | None = None
_busy = 0  # depth of runstream calls on the main thread


def uncaught_exception_seen() -> bool:
    return _uncaught


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    global _uncaught
    if not issubclass(exc_type, KeyboardInterrupt):
        _uncaught = True
    _previous_excepthook(exc_type, exc, tb)


_previous_excepthook = sys.excepthook


def install_excepthook() -> None:
    global _previous_excepthook
    if sys.excepthook is not _excepthook:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook


def on_sigterm(callback: Callable[[], None]) -> bool:
    """Call ``callback`` on SIGTERM (before the previous handler). False if no handler could be installed."""
    global _installed, _previous
    with _lock:
        if not _installed:
            if threading.current_thread() is not threading.main_thread():
                log.debug("SIGTERM handler not installed: init() was not called from the main thread")
                return False
            previous = signal.getsignal(signal.SIGTERM)
            if previous is signal.SIG_IGN:
                return False  # the process ignores SIGTERM: it will not die of it
            _previous = previous
            signal.signal(signal.SIGTERM, _handle)
            _installed = True
        _on_term.append(callback)
    return True


def after_fork_in_child() -> None:
    """In a forked child: the parent's runs are not the child's to end on SIGTERM. The handler stays and
    passes the signal on as before; a run the child starts itself registers anew."""
    global _lock, _busy, _pending_signal
    _lock = threading.Lock()  # it may have been held by a thread the fork left behind
    _on_term.clear()
    _busy = 0
    _pending_signal = None


def forget(callback: Callable[[], None]) -> None:
    with _lock:
        if callback in _on_term:
            _on_term.remove(callback)


class Busy:
    """Marks a runstream call on the main thread, so a signal arriving inside it is handled after it."""

    __slots__ = ("_main",)

    def __enter__(self) -> None:
        global _busy
        self._main = threading.current_thread() is threading.main_thread()
        if self._main:
            _busy += 1

    def __exit__(self, *exc: object) -> None:
        global _busy, _pending_signal
        if self._main:
            _busy -= 1
            if _busy == 0 and _pending_signal is not None:
                signum, frame = _pending_signal
                _pending_signal = None
                _handle(signum, frame)


def _handle(signum: int, frame: FrameType | None) -> None:
    global _pending_signal
    if _busy:
        _pending_signal = (signum, frame)
        return
    for callback in list(_on_term):
        try:
            callback()
        except Exception as exc:  # never let our cleanup stop the signal
            log.warning("run cleanup on SIGTERM failed", error=repr(exc))
    _chain(signum, frame)


def _chain(signum: int, frame: FrameType | None) -> None:
    previous = _previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL or previous is None:
        # Restore the default action and re-deliver, so the process ends "killed by SIGTERM".
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
