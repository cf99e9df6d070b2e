"""Neptune runs as neptune-exporter writes them: ``<project>/<run>_part_<n>.parquet``, one row per value.

Brought:

- float and int series become metrics (key: the attribute path), with their time. Neptune steps are
  decimals (``decimal(18,6)``); each is multiplied by ``step_multiplier`` (default 1, as the exporter's
  own loaders) and must then be a whole number: a point whose step is not (``0.5`` with multiplier
  1) is skipped and counted, and the report says to pass ``--step-multiplier`` (e.g. 1000 for steps
  in thousandths; keep one value for every import, or series will not line up).
- single values (float, int, string, bool, datetime, string set) become params, as text, as the
  exporter's MLflow loader writes them: bools ``true``/``false``, datetimes ISO 8601 in UTC, string
  sets their members sorted and joined by ``,``.
- ``sys/`` fields become the run's own: ``sys/name`` its name, ``sys/tags`` and ``sys/group_tags``
  its tags (labels), ``sys/creation_time`` its start, ``sys/owner`` its user, ``sys/hostname`` its
  host, ``sys/failed`` and ``sys/state`` its status, ``sys/modification_time`` its end. Other ``sys/``
  fields are skipped and counted.

Left out and counted: string series, histograms, files, file series and file sets. A file without
the exporter's columns, or one Parquet cannot read, is reported and skipped; the other files are read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from runstream._flatten import param_text
from runstream._history import HistoricRun, ImportReport, import_run_id
from runstream_core.errors import MissingExtraError, UsageError
from runstream_core.events import RunStatus

_PART = re.compile(r"^(?P<run>.+)_part_(?P<part>\d+)\.parquet$")
REQUIRED = (
    "project_id",
    "run_id",
    "attribute_path",
    "attribute_type",
    "step",
    "timestamp",
    "int_value",
    "float_value",
    "string_value",
    "bool_value",
    "datetime_value",
    "string_set_value",
)
_SERIES = {"float_series": "float_value", "int_series": "int_value"}
_SINGLE = {
    "float": "float_value",
    "int": "int_value",
    "string": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
}
_LEFT_OUT = {
    "string_series": "string series",
    "histogram_series": "histogram series",
    "file": "files",
    "file_series": "file series",
    "file_set": "file sets",
    "artifact": "artifacts",
}
_BATCH_ROWS = 65_536


def part_files(root: Path) -> dict[tuple[Path, str], list[Path]]:
    """The exporter's files at or under ``root``, by (directory, run file prefix), parts in order."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    runs: dict[tuple[Path, str], list[tuple[int, Path]]] = defaultdict(list)
    for path in root.rglob("*_part_*.parquet"):
        match = _PART.match(path.name)
        if match and path.is_file():
            runs[(path.parent, match["run"])].append((int(match["part"]), path))
    return {key: [path for _, path in sorted(parts)] for key, parts in sorted(runs.items())}


@dataclass
class _Run:
    project_id: str
    run_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    """``sys/`` values, by path."""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, int | None, float]]] = field(default_factory=lambda: defaultdict(list))


def read_neptune(
    root: Path, report: ImportReport, *, step_multiplier: int = 1, project: str | None = None
) -> Iterator[HistoricRun]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise MissingExtraError("importers", exc.name or "pyarrow") from exc
    if step_multiplier < 1:
        raise UsageError(f"--step-multiplier must be at least 1, got {step_multiplier}")
    for parts in part_files(root).values():
        runs: dict[tuple[str, str], _Run] = {}
        for path in parts:
            try:
                parquet = pq.ParquetFile(path)
                missing = [name for name in REQUIRED if name not in parquet.schema_arrow.names]
                if missing:
                    report.unreadable.append(
                        f"{path}: not a neptune-exporter file (missing columns {', '.join(missing)}); skipped"
                    )
                    continue
                for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=list(REQUIRED)):
                    _rows(batch, runs, step_multiplier, report)
            except Exception as exc:  # pyarrow's errors for a damaged or foreign file: ArrowInvalid, OSError...
                report.unreadable.append(f"{path}: cannot be read as Parquet ({exc}); skipped")
        for run in runs.values():
            yield _historic(run, report, project)


def _column(batch: Any, name: str) -> list[Any]:
    """A column as Python values; times as epoch milliseconds, whatever the unit."""
    import pyarrow as pa

    column = batch.column(name)
    if pa.types.is_timestamp(column.type):
        per_ms = {"s": Decimal("0.001"), "ms": Decimal(1), "us": Decimal(1000), "ns": Decimal(10**6)}
        unit = per_ms[column.type.unit]
        return [None if v is None else int(Decimal(v) / unit) for v in column.cast(pa.int64()).to_pylist()]
    values: list[Any] = column.to_pylist()
    if name in ("timestamp", "datetime_value"):  # not a timestamp column: no time
        return [None] * len(values)
    return values


def _rows(batch: Any, runs: dict[tuple[str, str], _Run], step_multiplier: int, report: ImportReport) -> None:
    columns = {name: _column(batch, name) for name in REQUIRED}
    for i in range(batch.num_rows):
        project_id, run_id = columns["project_id"][i], columns["run_id"][i]
        path, kind = columns["attribute_path"][i], columns["attribute_type"][i]
        if not isinstance(project_id, str) or not isinstance(run_id, str) or not isinstance(path, str):
            report.skip("Parquet rows without project, run or attribute path")
            continue
        run = runs.get((project_id, run_id))
        if run is None:
            run = runs[(project_id, run_id)] = _Run(project_id, run_id)
        if kind in _SERIES:
            step = _step(columns["step"][i], step_multiplier)
            if step is None:
                report.skip("points: step not a whole number after --step-multiplier")
                continue
            run.metrics[path].append((step, columns["timestamp"][i], columns[_SERIES[kind]][i]))
        elif kind in _SINGLE:
            value = columns[_SINGLE[kind]][i]
            if path.startswith("sys/"):
                run.fields[path] = value
            elif value is not None:
                run.params[path] = _text(kind, value)
        else:
            report.skip(_LEFT_OUT.get(kind, f"attributes of type {kind!r}") + " (not imported)")


def _step(step: Any, multiplier: int) -> int | None:
    if step is None:
        return None
    try:
        scaled = Decimal(str(step)) * multiplier
    except InvalidOperation:
        return None
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def _text(kind: str, value: Any) -> str:
    if kind == "datetime":
        return datetime.fromtimestamp(value / 1000, UTC).isoformat().replace("+00:00", "Z")
    if kind == "string_set":
        return ",".join(sorted(str(v) for v in value))
    return param_text(value)


_MAPPED_FIELDS = {
    "sys/name",
    "sys/tags",
    "sys/group_tags",
    "sys/creation_time",
    "sys/modification_time",
    "sys/owner",
    "sys/hostname",
    "sys/failed",
    "sys/state",
    "sys/id",
    "sys/custom_run_id",
}


def _historic(run: _Run, report: ImportReport, project: str | None) -> HistoricRun:
    fields = run.fields
    report.skip("Neptune sys/ fields not mapped to a run field", len(set(fields) - _MAPPED_FIELDS))
    tags = {str(label): "" for key in ("sys/tags", "sys/group_tags") for label in fields.get(key) or ()}
    point_times = [ts for points in run.metrics.values() for _, ts, _ in points if ts is not None]
    started = _ms(fields.get("sys/creation_time")) or min(point_times, default=0)
    state = str(fields.get("sys/state") or "").lower()
    status = RunStatus.RUNNING if state in ("active", "running") else RunStatus.FINISHED
    if fields.get("sys/failed"):
        status = RunStatus.FAILED
    ended = None
    if status is not RunStatus.RUNNING:
        ended = _ms(fields.get("sys/modification_time")) or max(point_times, default=started)
    metrics = {
        key: [(step, started if ts is None else ts, value) for step, ts, value in points]
        for key, points in run.metrics.items()
    }
    return HistoricRun(
        source="neptune",
        source_key=(run.project_id, run.run_id),
        run_id=import_run_id("neptune", run.run_id, run.project_id),
        project=project or run.project_id,
        started_at_ms=started,
        ended_at_ms=ended,
        status=status,
        name=str(fields.get("sys/name") or run.run_id),
        user=str(fields.get("sys/owner") or ""),
        host=str(fields.get("sys/hostname") or ""),
        tags=tags,
        params=run.params,
        metrics=metrics,
    )


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) else None
