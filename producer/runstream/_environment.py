"""Facts about where a run executes: host, user, git commit. Each is best effort and never raises.

Each is cleaned to what the event schema accepts (no control character, at most ``MAX_NAME_LEN``
characters), so that an odd ``$USER`` cannot get a run's records refused by the worker.
"""

from __future__ import annotations

import getpass
import re
import socket
import subprocess

from runstream_core.events import CONTROL_CHARACTERS, MAX_NAME_LEN

_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def clean(text: str) -> str:
    """``text`` without control characters, cut to ``MAX_NAME_LEN`` characters."""
    return _CONTROL.sub("", text)[:MAX_NAME_LEN]


def hostname() -> str:
    try:
        return clean(socket.gethostname())
    except OSError:
        return ""


def username() -> str:
    try:
        return clean(getpass.getuser())
    except (OSError, KeyError):
        return ""


def git_commit(cwd: str | None = None) -> str:
    """HEAD commit of the working directory's repository, or "" outside a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return clean(out.stdout.strip()) if out.returncode == 0 else ""
