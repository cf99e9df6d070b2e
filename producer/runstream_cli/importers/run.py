"""One import, whatever the source: read runs, write and send their records with progress bars, report."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from runstream._history import IMPORTS_DIR, HistoricRun, HistoryWriter, ImportReport
from runstream.settings import Settings
from runstream_core.errors import CommError


def run_import(
    source: str,
    runs: Iterable[HistoricRun],
    *,
    total_runs: int | None,
    team: str,
    report: ImportReport,
    settings: Settings | None = None,
) -> int:
    """Send every run ``runs`` yields; print what was brought and what was left out. Returns the exit status:
    1 when an input could not be read or Kafka did not take every record, else 0."""
    settings = settings or Settings()
    columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    console = Console(stderr=True)
    with Progress(*columns, transient=True, console=console) as bars:
        read = bars.add_task(f"{source} runs", total=total_runs)
        sent = bars.add_task("records sent", total=0)
        writer = HistoryWriter(settings, team, progress=lambda n: bars.advance(sent, n), report=report)
        try:
            for run in runs:
                writer.add(run)
                bars.update(sent, total=report.records)
                bars.advance(read)
            writer.send()
        except CommError as exc:
            raise CommError(
                f"{exc}; the runs written so far wait in {settings.runs_dir / IMPORTS_DIR} for `runstream sync`"
            ) from exc
    print_report(source, report, settings)
    return 1 if report.unreadable or report.undelivered else 0


def print_report(source: str, report: ImportReport, settings: Settings) -> None:
    print(
        f"imported {report.runs:,} run(s) from {source}: {report.points:,} points, {report.params:,} params, "
        f"{report.tags:,} tags, {report.summary:,} summary values; "
        f"{report.sent_records:,} of {report.records:,} records acknowledged by Kafka"
    )
    for reason, count in sorted(report.skipped.items()):
        print(f"  skipped {count:,} {reason}")
    for problem in report.unreadable:
        print(f"runstream: {problem}", file=sys.stderr)
    if report.undelivered:
        print(
            f"runstream: {len(report.undelivered)} run(s) not acknowledged by Kafka; they wait in "
            f"{settings.runs_dir / IMPORTS_DIR}: run `runstream sync {settings.runs_dir / IMPORTS_DIR}` "
            "or this import again",
            file=sys.stderr,
        )
