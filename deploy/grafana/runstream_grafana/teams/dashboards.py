"""Dashboard JSON files that ``teams sync`` imports: ``<dir>/team/*.json`` per team, ``<dir>/admin/*.json`` once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runstream_core.errors import UsageError

# Keys Grafana assigns itself; they differ between organizations and saves.
_SERVER_KEYS = frozenset({"id", "version"})


@dataclass(frozen=True)
class DashboardFile:
    uid: str
    title: str
    model: dict[str, Any]
    """The dashboard JSON without the keys Grafana assigns (id, version)."""

    source: Path


def comparable(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` without the keys Grafana assigns, for comparing a stored dashboard with a file."""
    return {k: v for k, v in model.items() if k not in _SERVER_KEYS}


def load_dashboards(directory: Path) -> tuple[DashboardFile, ...]:
    """The ``*.json`` dashboards of ``directory`` by file name; a missing directory holds none."""
    if not directory.is_dir():
        return ()
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"dashboard {path}: not readable JSON: {exc}") from exc
        if not isinstance(model, dict):
            raise UsageError(f"dashboard {path}: expected a JSON object")
        uid, title = model.get("uid"), model.get("title")
        if not isinstance(uid, str) or not uid or not isinstance(title, str) or not title:
            raise UsageError(f"dashboard {path}: needs a non-empty 'uid' and 'title'")
        found.append(DashboardFile(uid, title, comparable(model), path))
    uids = [d.uid for d in found]
    if len(set(uids)) != len(uids):
        raise UsageError(f"dashboards in {directory}: two files share a uid")
    return tuple(found)
