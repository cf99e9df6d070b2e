"""`runstream import neptune` on Parquet files in neptune-exporter's layout and schema, written with pyarrow:
exact rows on the real broker and engine, decimal steps, and files that are no such export."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from runstream._history import HistoryWriter, ImportReport
from runstream_cli.importers.from_neptune import read_neptune
from runstream_cli.worker_process import WorkerProcess
from runstream_worker.lag import wait_caught_up
from tests.fixtures.settings import StackSettings as Settings
from tests.importers.helpers import import_cli, params, points, runs

T0 = 1_700_000_000_000
# neptune-exporter's schema (src/neptune_exporter/model.py), column for column.
SCHEMA = pa.schema(
    [
        ("project_id", pa.string()),
        ("run_id", pa.string()),
        ("attribute_path", pa.string()),
        ("attribute_type", pa.string()),
        ("step", pa.decimal128(18, 6)),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("string_value", pa.string()),
        ("bool_value", pa.bool_()),
        ("datetime_value", pa.timestamp("ms", tz="UTC")),
        ("string_set_value", pa.list_(pa.string())),
        ("file_value", pa.struct([("path", pa.string())])),
        (
            "histogram_value",
            pa.struct([("type", pa.string()), ("edges", pa.list_(pa.float64())), ("values", pa.list_(pa.float64()))]),
        ),
    ]
)
_VALUE = {
    "float": "float_value",
    "float_series": "float_value",
    "int": "int_value",
    "int_series": "int_value",
    "string": "string_value",
    "string_series": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
    "file": "file_value",
    "histogram_series": "histogram_value",
}


def row(run: str, path: str, kind: str, value: Any, step: str | None = None, ts: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {name: None for name in SCHEMA.names}
    out.update(project_id="ws/cls", run_id=run, attribute_path=path, attribute_type=kind)
    out[_VALUE[kind]] = value
    out["step"] = None if step is None else Decimal(step)
    out["timestamp"] = None if ts is None else ts
    return out


def write_part(directory: Path, run: str, part: int, rows: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), directory / f"{run}_part_{part}.parquet")


def make_export(root: Path) -> None:
    project = root / "ws_cls-0f3a"  # the exporter's sanitised project directory
    write_part(
        project,
        "CLS-1",
        0,
        [
            row("CLS-1", "sys/name", "string", "baseline"),
            row("CLS-1", "sys/tags", "string_set", ["resnet", "cifar"]),
            row("CLS-1", "sys/creation_time", "datetime", T0),
            row("CLS-1", "sys/modification_time", "datetime", T0 + 60_000),
            row("CLS-1", "sys/state", "string", "Inactive"),
            row("CLS-1", "sys/failed", "bool", False),
            row("CLS-1", "sys/owner", "string", "alice"),
            row("CLS-1", "sys/size", "float", 1234.0),  # no run field: counted
            row("CLS-1", "parameters/lr", "float", 0.001),
            row("CLS-1", "parameters/epochs", "int", 10),
            row("CLS-1", "parameters/amp", "bool", True),
            row("CLS-1", "parameters/since", "datetime", T0),
            row("CLS-1", "parameters/datasets", "string_set", ["b", "a"]),
            row("CLS-1", "metrics/loss", "float_series", 1.5, "0", T0 + 1000),
            row("CLS-1", "metrics/loss", "float_series", math.nan, "1", T0 + 2000),
            row("CLS-1", "metrics/loss", "float_series", 0.5, "2.5", T0 + 2500),  # fractional: counted
            row("CLS-1", "metrics/count", "int_series", 7, "1", T0 + 2000),
            row("CLS-1", "logs/stdout", "string_series", "hello", "0", T0 + 1000),
            row("CLS-1", "files/model", "file", {"path": "files/model.pt"}),
            row("CLS-1", "hist", "histogram_series", {"type": "COUNTING", "edges": [0, 1], "values": [3]}, "0", T0),
        ],
    )
    write_part(project, "CLS-1", 1, [row("CLS-1", "metrics/loss", "float_series", math.inf, "3", T0 + 3000)])
    write_part(
        project,
        "CLS-2",
        0,
        [
            row("CLS-2", "sys/creation_time", "datetime", T0 + 100_000),
            row("CLS-2", "sys/failed", "bool", True),
            row("CLS-2", "metrics/loss", "float_series", 9.0, "0", T0 + 101_000),
        ],
    )
    # Not exports: wrong columns, and no Parquet at all.
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), project / "wrong_part_0.parquet")
    (project / "junk_part_0.parquet").write_bytes(b"not parquet at all")


def test_neptune_export_arrives_with_its_steps_times_and_fields(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    root = tmp_path / "exports" / "data"
    make_export(root)
    worker = worker_factory(pipeline_settings)
    first = import_cli(pipeline_settings, "neptune", str(root), "--team", "cls", status=1)
    assert "wrong_part_0.parquet: not a neptune-exporter file (missing columns project_id" in first.stderr
    assert "junk_part_0.parquet: cannot be read as Parquet" in first.stderr
    assert first.stdout.startswith("imported 2 run(s) from neptune: 5 points, 5 params, 2 tags, 0 summary values")
    for line in (
        "skipped 1 points: step not a whole number after --step-multiplier",
        "skipped 1 string series (not imported)",
        "skipped 1 files (not imported)",
        "skipped 1 histogram series (not imported)",
        "skipped 1 Neptune sys/ fields not mapped to a run field",
    ):
        assert line in first.stdout, first.stdout
    assert import_cli(pipeline_settings, "neptune", str(root), "--team", "cls", status=1).stdout == first.stdout
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0
    client = clickhouse_factory(pipeline_settings)

    assert points(client, "cls") == [
        ("CLS-1", "metrics/count", 1, T0 + 2000, 7.0),
        ("CLS-1", "metrics/loss", 0, T0 + 1000, 1.5),
        ("CLS-1", "metrics/loss", 1, T0 + 2000, "nan"),
        ("CLS-1", "metrics/loss", 3, T0 + 3000, math.inf),
        ("CLS-2", "metrics/loss", 0, T0 + 101_000, 9.0),
    ]
    assert runs(client, "cls") == [
        ("ws/cls", "CLS-1", "baseline", "", "alice", "", {"cifar": "", "resnet": ""}, "finished", T0, T0 + 60_000),
        ("ws/cls", "CLS-2", "CLS-2", "", "", "", {}, "failed", T0 + 100_000, T0 + 101_000),
    ]
    assert params(client, "cls") == [
        ("CLS-1", "parameters/amp", "true"),
        ("CLS-1", "parameters/datasets", "a,b"),
        ("CLS-1", "parameters/epochs", "10"),
        ("CLS-1", "parameters/lr", "0.001"),
        ("CLS-1", "parameters/since", "2023-11-14T22:13:20Z"),
    ]


def test_a_step_multiplier_turns_decimal_steps_into_whole_ones(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_export(root)
    report = ImportReport()
    by_id = {run.run_id: run for run in read_neptune(root, report, step_multiplier=10)}
    assert [step for step, _, _ in by_id["CLS-1"].metrics["metrics/loss"]] == [0, 10, 25, 30]
    assert "points: step not a whole number after --step-multiplier" not in report.skipped


def test_columns_of_the_wrong_types_skip_their_values_and_keep_the_rest(tmp_path: Path) -> None:
    names = [name for name in SCHEMA.names if name not in ("file_value", "histogram_value")]
    text = {name: ["x", "x"] for name in names}
    text.update(
        project_id=["ws/cls", "ws/cls"],
        run_id=["CLS-9", "CLS-9"],
        attribute_path=["metrics/loss", "metrics/loss"],
        attribute_type=["float_series", "float_series"],
        step=["1", "oops"],
        float_value=["0.5", "1.5"],
    )
    (tmp_path / "p").mkdir()
    pq.write_table(pa.table(text), tmp_path / "p" / "CLS-9_part_0.parquet")  # every column text
    report = ImportReport()
    (run,) = read_neptune(tmp_path, report)
    writer = HistoryWriter(Settings(_env_file=None, runs_dir=tmp_path / "runs"), "cls", report=report)  # type: ignore[call-arg]
    events = writer.events(run)
    assert events is not None and report.points == 0 and not report.unreadable
    assert dict(report.skipped) == {
        "points: step not a whole number after --step-multiplier": 1,
        "points: value not a number": 1,
    }
