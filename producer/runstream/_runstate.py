"""A run's local state file, ``<runs_dir>/<run_id>/run.json``: what ``resume=True`` continues from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from runstream._private import private_dir, write_private

STATE_FILE = "run.json"


@dataclass(frozen=True)
class RunState:
    run_id: str
    team: str
    project: str
    name: str
    group: str
    started_at_ms: int
    last_step: int
    status: str


def load(run_dir: Path) -> RunState | None:
    """The saved state, or None when there is none or it cannot be read."""
    try:
        data = json.loads((run_dir / STATE_FILE).read_text())
        return RunState(**{field: data[field] for field in RunState.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(run_dir: Path, state: RunState) -> None:
    """Write atomically (temp file + rename) so a kill never leaves half a file; the file is 0600 (the
    run's directory 0700), its params being nobody else's business. Raises OSError."""
    private_dir(run_dir)
    write_private(run_dir / STATE_FILE, json.dumps(asdict(state), sort_keys=True).encode())
