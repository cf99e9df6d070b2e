"""Facts about where a run executes: host, user, git commit. Each is best effort and never raises."""

from __future__ import annotations

import getpass
import socket
import subprocess


def hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""


def username() -> str:
    try:
        return getpass.getuser()
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
    return out.stdout.strip() if out.returncode == 0 else ""
