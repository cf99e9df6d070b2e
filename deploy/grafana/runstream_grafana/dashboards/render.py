"""Dashboard JSON files: rendering, writing, and finding the files that differ from the generator."""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from runstream_core.log import get_logger
from runstream_grafana.dashboards.catalog import DASHBOARDS

# Relative to the repository root, where the CLI is run; docker-compose.yml mounts it into Grafana.
DEFAULT_OUT_DIR = Path("deploy/grafana/dashboards")
FOLDERS = ("team", "admin")

log = get_logger(__name__)


def render(model: Dashboard) -> str:
    """The file text of one dashboard: sorted keys, so regenerating changes only what changed."""
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[Path, str]:
    """Every dashboard's file text by its path under the output directory (``team/<uid>.json``)."""
    return {Path(spec.folder) / f"{spec.uid}.json": render(spec.build()) for spec in DASHBOARDS}


def _stale(out_dir: Path, expected: dict[Path, str]) -> list[Path]:
    """JSON files in the generator's folders that no dashboard produces (renamed or removed)."""
    found = (p.relative_to(out_dir) for folder in FOLDERS for p in sorted((out_dir / folder).glob("*.json")))
    return [p for p in found if p not in expected]


def differences(out_dir: Path = DEFAULT_OUT_DIR) -> list[Path]:
    """Files under ``out_dir`` that are missing, stale, or not what the generator writes."""
    expected = rendered()
    differing = [
        path
        for path, text in expected.items()
        if not (out_dir / path).is_file() or (out_dir / path).read_text(encoding="utf-8") != text
    ]
    return sorted(differing + _stale(out_dir, expected))


def write(out_dir: Path = DEFAULT_OUT_DIR) -> list[Path]:
    """Writes every dashboard under ``out_dir`` and removes stale files; returns the files changed."""
    expected = rendered()
    changed = differences(out_dir)
    for path in changed:
        target = out_dir / path
        if path in expected:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected[path], encoding="utf-8")
        else:
            target.unlink()
        log.info("dashboard_file_updated", path=str(target), removed=path not in expected)
    return changed
