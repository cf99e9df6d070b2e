"""TensorBoard event files, read with TensorBoard's own record reader and protobufs.

A run is each directory holding event files (``events.out.tfevents.*``), named by its path under
the directory given (``resnet/lr_0.1``; the directory itself by its own name); the project is that
directory's name unless ``--project`` says otherwise. Brought: every scalar (TF1 ``simple_value``
and TF2 scalar tensors) with its step and wall time, every point kept (a restarted job's repeated
steps too); the run starts at its first event and ends, finished, at its last. Left out and
counted: other summaries (histograms, images, audio, text, hparams). A file whose records fail their
checksum is read up to the damage and reported; a file cut short (a writer killed mid-record) is
read up to the cut.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runstream._history import HistoricRun, ImportReport, digest
from runstream_core.errors import MissingExtraError, UsageError

_EVENT_FILES = "*tfevents*"
_SCALARS = "scalars"


def run_dirs(root: Path) -> list[Path]:
    """Directories at or under ``root`` holding event files, in path order."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    return sorted({path.parent for path in root.rglob(_EVENT_FILES) if path.is_file()})


def read_tensorboard(root: Path, report: ImportReport, project: str | None = None) -> Iterator[HistoricRun]:
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub import errors
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
        from tensorboard.util import tensor_util
    except ModuleNotFoundError as exc:
        raise MissingExtraError("importers", exc.name or "tensorboard") from exc
    root = root.resolve()
    project = project or root.name
    for directory in run_dirs(root):
        relative = directory.relative_to(root).as_posix()
        name = root.name if relative == "." else relative
        metrics: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        times: list[int] = []
        for path in sorted(p for p in directory.glob(_EVENT_FILES) if p.is_file()):
            reader = PyRecordReader_New(str(path))
            plugins: dict[str, str] = {}
            events = 0
            while True:
                try:
                    reader.GetNext()
                except errors.OutOfRangeError:
                    break
                except errors.DataLossError as exc:
                    if "truncated" in str(exc):
                        report.skip("event files cut short (read up to the cut)")
                    else:
                        report.unreadable.append(f"{path}: {exc}; read the {events:,} events before it")
                    break
                events += 1
                event = event_pb2.Event()
                try:
                    event.ParseFromString(reader.record())
                except Exception:  # protobuf's DecodeError: a record that passed its checksum but is no event
                    report.skip("event records that are no event")
                    continue
                ts_ms = round(event.wall_time * 1000)
                times.append(ts_ms)
                for value in event.summary.value:
                    _scalar(value, event.step, ts_ms, plugins, metrics, report, tensor_util)
        if not times:
            continue
        yield HistoricRun(
            source="tensorboard",
            source_key=(project, name),
            run_id=f"tb-{digest('tensorboard', project, name)[:24]}",
            project=project,
            name=name,
            started_at_ms=min(times),
            ended_at_ms=max(times),
            metrics=dict(metrics),
        )


def _scalar(
    value: Any,
    step: int,
    ts_ms: int,
    plugins: dict[str, str],
    metrics: dict[str, list[tuple[int, int, float]]],
    report: ImportReport,
    tensor_util: Any,
) -> None:
    """Add ``value`` (a summary value) to ``metrics`` when it is a scalar; count it otherwise. A TF2 writer
    names a tag's plugin in its first value only, so ``plugins`` remembers it for the file."""
    if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
        plugins[value.tag] = value.metadata.plugin_data.plugin_name
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        metrics[value.tag].append((step, ts_ms, value.simple_value))
        return
    if kind == "tensor" and plugins.get(value.tag) == _SCALARS:
        try:
            array = tensor_util.make_ndarray(value.tensor)
        except (ValueError, TypeError, struct.error):
            array = None
        if array is not None and array.size == 1:
            metrics[value.tag].append((step, ts_ms, float(array.reshape(()).item())))
            return
    report.skip("summaries that are no scalar (histograms, images, audio, text, hparams)")
