"""runstream's files on disk are its user's alone: directories 0700, files 0600.

A run's directory holds its config params (which may hold secrets) in ``run.json`` and in every
spooled start record, so nothing under ``runs_dir`` is readable by other users, whatever the umask.
Directories that exist already (made by an older version, or by hand) are tightened when opened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> bool:
    """Make ``path`` a directory only its owner can enter, creating it and any missing parents (0700).

    Raises OSError when it cannot be created. Returns False when it exists but cannot be tightened
    (another user owns it): it is used as it is.
    """
    missing: list[Path] = []
    probe = path
    while not probe.is_dir() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)  # raises when a file is in the way
        os.chmod(directory, DIR_MODE)  # mkdir's mode is cut by the umask; ours must not be widened by it
    return _tighten(path, DIR_MODE)


def _tighten(path: Path, mode: int) -> bool:
    if stat.S_IMODE(path.stat().st_mode) == mode:
        return True
    try:
        os.chmod(path, mode)
    except PermissionError:
        return False
    return True


def tighten(paths: list[Path]) -> None:
    """Best effort: make existing directories 0700 and files 0600 (e.g. a spool an older version wrote)."""
    for path in paths:
        with contextlib.suppress(OSError):
            _tighten(path, DIR_MODE if path.is_dir() else FILE_MODE)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a file that only its owner may read (0600), an existing one tightened."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, then rename): a kill never leaves half
    a file, and the file is 0600 from its first byte. Raises OSError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
