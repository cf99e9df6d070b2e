"""Draws the README's figures from the demo's data: ``.venv/bin/python docs/make_figures.py``.

Runs ``runstream demo`` (simulated training jobs of two teams through Kafka and a worker) into a
temporary embedded ClickHouse, then draws ``docs/images/compare.png`` with
``runstream.query.compare(...).plot()``: the training loss of each team's runs, overlaid.
Needs a Kafka broker at ``RUNSTREAM_KAFKA_BOOTSTRAP`` (``make kafka-up`` starts one on
127.0.0.1:9092) and the ``stream`` and ``notebook`` extras.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from matplotlib.figure import Figure  # drawn straight to a file: no pyplot, no display

from runstream import query
from runstream.settings import Settings
from runstream_cli.demo import run_demo

IMAGES = Path(__file__).resolve().parent / "images"
KEY = "train/loss"
POINTS = 100  # 400-step curves in 16-step buckets: the min..max band shows the noise
MAX_BYTES = 150_000  # README images stay small


def demo_store(workdir: Path, steps: int) -> Settings:
    """Run the demo into an embedded store under ``workdir``; returns settings that read it."""
    base = Settings().model_copy(update={"clickhouse_url": f"chdb://{(workdir / 'unused').resolve()}"})
    if run_demo(base, steps=steps, workdir=workdir / "demo") != 0:
        raise SystemExit("the demo failed; see the worker log it names")
    # run_demo's worker has exited, so this process may open the store.
    return base.model_copy(update={"clickhouse_url": f"chdb://{(workdir / 'demo' / 'clickhouse').resolve()}"})


def draw_compare(settings: Settings, out: Path) -> None:
    runs = query.runs(settings=settings).sort_values(["team", "project", "name"])  # a stable legend order
    projects = list(dict.fromkeys(zip(runs["team"], runs["project"], strict=True)))
    figure = Figure(figsize=(11, 3.8))
    axes = figure.subplots(1, len(projects), squeeze=False)
    for ax, (team, project) in zip(axes[0], projects, strict=True):
        ids = runs[(runs["team"] == team) & (runs["project"] == project)]["run_id"]
        query.compare(ids, KEY, points=POINTS, settings=settings).plot(ax=ax)
        ax.set_title(f"{team} / {project}", fontsize=10)
        ax.grid(alpha=0.3)
    figure.suptitle(
        f"runstream.query.compare(run_ids, {KEY!r}, points={POINTS}).plot(ax=ax)", fontsize=10, family="monospace"
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90, pil_kwargs={"optimize": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="steps per simulated run")
    parser.add_argument("--out", type=Path, default=IMAGES / "compare.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runstream-figures-") as tmp:
        settings = demo_store(Path(tmp), args.steps)
        try:
            draw_compare(settings, args.out)
        finally:
            query.close()
    size = args.out.stat().st_size
    print(f"{args.out}: {size:,} bytes")
    if size > MAX_BYTES:
        sys.exit(f"{args.out} is over {MAX_BYTES:,} bytes")


if __name__ == "__main__":
    main()
