"""W&B runs from the directories the W&B SDK writes (``wandb/offline-run-*``, and online runs' ``run-*``),
parsed with W&B's own record definitions (``wandb.proto``).

Since wandb 0.2x the SDK no longer ships a Python reader of its ``.wandb`` files (its Go service reads
them), so the framing is read here: W&B's LevelDB-style log, 32 KiB blocks of records, each with a
CRC-32 of its type and data. A record that fails its check ends the file: what came before is
imported and the file is reported.

Brought: the run's id, project, name, group, tags, host, git commit and start time; its config as
params (nested keys joined with ``.``); every numeric history value (bools as 0/1, NaN and
infinities kept) at its ``_step`` and ``_timestamp``, nested keys joined with ``/`` as W&B shows
them; summary values set apart from the history (``run.summary["best"] = ...``) as summary; the
exit as the end (exit code 0: finished, else failed; no exit record: crashed, ended at its last
point). Directories of one run (a resumed run) are read together. Left out and counted: media,
tables and histograms in the history, text history values, system metrics, files and console output.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runstream._history import HistoricRun, ImportReport, flat_params, import_run_id
from runstream_core.errors import MissingExtraError, UsageError
from runstream_core.events import RunStatus

_FILE_HEADER = struct.Struct("<4sHB")
_RECORD_HEADER = struct.Struct("<IHB")
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC = {kind: zlib.crc32(bytes([kind])) for kind in (_FULL, _FIRST, _MIDDLE, _LAST)}
_LEFT_OUT = {
    "stats": "system metrics records",
    "files": "file records",
    "output": "console output records",
    "output_raw": "console output records",
    "artifact": "artifact records",
}


class CorruptLogError(Exception):
    """A record of a ``.wandb`` file failed its check; what was read before it stands."""


def records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file, in order; ``CorruptLogError`` at the first damaged one."""
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size:
        raise CorruptLogError("too short for a W&B log")
    ident, magic, version = _FILE_HEADER.unpack_from(data)
    if (ident, magic, version) != (_IDENT, _MAGIC, _VERSION):
        raise CorruptLogError("not a W&B log (wrong header)")
    pos, pending = _FILE_HEADER.size, bytearray()
    while pos < len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _RECORD_HEADER.size:  # the rest of a block too small for a header is padding
            pos += room
            continue
        if pos + _RECORD_HEADER.size > len(data):
            raise CorruptLogError(f"cut short at byte {pos:,}")
        crc, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        if crc == length == kind == 0:  # zero padding after the last record of an unfinished block
            pos += room
            continue
        body = data[pos + _RECORD_HEADER.size : pos + _RECORD_HEADER.size + length]
        if kind not in _TYPE_CRC or len(body) < length or zlib.crc32(body, _TYPE_CRC[kind]) != crc:
            raise CorruptLogError(f"damaged record at byte {pos:,}")
        pos += _RECORD_HEADER.size + length
        if kind in (_FULL, _FIRST) and pending:
            raise CorruptLogError(f"record cut off before byte {pos:,}")
        pending += body
        if kind in (_FULL, _LAST):
            yield bytes(pending)
            pending.clear()


def run_files(root: Path) -> dict[str, list[Path]]:
    """``.wandb`` files at or under ``root``, by the run id in their name (``run-<id>.wandb``), oldest first."""
    if not root.exists():
        raise UsageError(f"{root} does not exist")
    found = [root] if root.is_file() else sorted(root.rglob("run-*.wandb"))
    runs: dict[str, list[Path]] = defaultdict(list)
    for path in found:
        runs[path.stem.removeprefix("run-")].append(path)  # directory names begin with their start time
    return dict(runs)


@dataclass
class _Run:
    run_id: str = ""
    entity: str = ""
    project: str = ""
    name: str = ""
    group: str = ""
    host: str = ""
    git_commit: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    started_ms: int = 0
    runtime_s: float | None = None
    exit_code: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, int, float]]] = field(default_factory=lambda: defaultdict(list))
    history_keys: set[str] = field(default_factory=set)
    """The first part of every key the history holds: the summary repeats their last values."""
    last_ms: int = 0


def read_wandb(root: Path, report: ImportReport, project: str | None = None) -> Iterator[HistoricRun]:
    try:
        from wandb.proto import wandb_internal_pb2
    except ModuleNotFoundError as exc:
        raise MissingExtraError("importers", exc.name or "wandb") from exc
    for run_id, paths in run_files(root).items():
        run = _Run(run_id=run_id)
        for path in paths:
            try:
                for data in records(path):
                    record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
                    record.ParseFromString(data)
                    _apply(record, run, report)
            except CorruptLogError as exc:
                report.unreadable.append(f"{path}: {exc}; read what came before it")
            except Exception as exc:  # protobuf's DecodeError: a record that passed its check but is no record
                report.unreadable.append(f"{path}: a record cannot be parsed ({exc}); read what came before it")
        if run.started_ms or run.metrics:
            yield _historic(run, report, project)


def _apply(record: Any, run: _Run, report: ImportReport) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        _run_record(record.run, run)
    elif kind == "config":
        for item in record.config.update:
            _set(run.config, item)
        for item in record.config.remove:
            run.config.pop(_key(item, "."), None)
    elif kind == "history":
        _history(record.history, run, report)
    elif kind == "summary":
        for item in record.summary.update:
            _set(run.summary, item, sep="/")
        for item in record.summary.remove:
            run.summary.pop(_key(item, "/"), None)
    elif kind == "exit":
        run.exit_code = record.exit.exit_code
        run.runtime_s = record.exit.runtime
    elif kind in _LEFT_OUT:
        report.skip(_LEFT_OUT[kind] + " (not imported)")


def _run_record(info: Any, run: _Run) -> None:
    run.run_id = info.run_id or run.run_id
    run.entity = info.entity or run.entity
    run.project = info.project or run.project
    run.name = info.display_name or run.name
    run.group = info.run_group or run.group
    run.host = info.host or run.host
    run.git_commit = info.git.commit or run.git_commit
    run.tags = list(info.tags) or run.tags
    if info.HasField("start_time") and not run.started_ms:  # a resumed run keeps its first start
        run.started_ms = info.start_time.seconds * 1000 + info.start_time.nanos // 1_000_000
    for item in info.config.update:
        run.config[_key(item, ".")] = _json(item.value_json)


def _key(item: Any, sep: str) -> str:
    return sep.join(item.nested_key) if item.nested_key else str(item.key)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _set(target: dict[str, Any], item: Any, sep: str = ".") -> None:
    target[_key(item, sep)] = _json(item.value_json)


def _history(history: Any, run: _Run, report: ImportReport) -> None:
    values = {_key(item, "/"): _json(item.value_json) for item in history.item}
    step = values.pop("_step", history.step.num)
    when = values.pop("_timestamp", None)
    ts_ms = round(when * 1000) if isinstance(when, (int, float)) else run.last_ms or run.started_ms
    run.last_ms = max(run.last_ms, ts_ms)
    # A media object, table or histogram comes as the fields of one value, one of them ``_type``.
    media = {key.removesuffix("/_type") for key in values if key.endswith("/_type")}
    report.skip("history media, tables and histograms (not imported)", len(media))
    for key, value in values.items():
        top = key.split("/", 1)[0]
        run.history_keys.add(top)
        if key.startswith("_") or any(key == m or key.startswith(m + "/") for m in media):
            continue  # W&B's own (_runtime, _wandb), or a media object's fields
        if isinstance(value, (bool, int, float)):
            run.metrics[key].append((int(step), ts_ms, float(value)))
        else:
            report.skip("history values that are no number (text, lists)")


def _historic(run: _Run, report: ImportReport, project: str | None) -> HistoricRun:
    summary: dict[str, Any] = {}
    for key, value in run.summary.items():
        if key.startswith("_") or key.split("/", 1)[0] in run.history_keys:  # W&B's own, or a logged value's last
            continue
        if isinstance(value, (bool, int, float, str)):
            summary[key] = value
        else:
            report.skip("summary values that are no number or text")
    config = {key: value for key, value in run.config.items() if not key.startswith("_wandb")}
    started = run.started_ms or min((ts for pts in run.metrics.values() for _, ts, _ in pts), default=0)
    if run.exit_code is None:
        status, ended = RunStatus.CRASHED, max(run.last_ms, started)
    else:
        status = RunStatus.FINISHED if run.exit_code == 0 else RunStatus.FAILED
        ended = max(started + round((run.runtime_s or 0) * 1000), run.last_ms)
    return HistoricRun(
        source="wandb",
        source_key=(run.entity, run.project, run.run_id),
        run_id=import_run_id("wandb", run.run_id, run.entity, run.project),
        project=project or run.project or "uncategorized",
        started_at_ms=started,
        ended_at_ms=ended,
        status=status,
        name=run.name or run.run_id,
        group=run.group,
        host=run.host,
        git_commit=run.git_commit,
        tags={tag: "" for tag in run.tags},
        params=flat_params(config),
        summary=summary,
        metrics=dict(run.metrics),
    )
