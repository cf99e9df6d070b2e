"""Runs recorded elsewhere (``runstream import``), sent as the records a live run would have produced.

An imported run becomes its start (params in it), batches of points, its summary and its end, with
the times the source recorded (start, end, each point's wall time) instead of now, and under the
same bounds as a live run's (``_points``, ``_entries``, the schema's step and time ranges): what a
live run would refuse is skipped here and counted. The records are written to a spool and sent by
``runstream sync``'s replay, so Kafka, the worker and exactly-once treat them as any run's records.

Identities are derived from the source, never drawn at random, so an import made twice sends the
very same records and the worker drops the repeats. Every metric key of a run is a producer of its
own (its id a digest of the source, the run and the key); its points, sorted by step and time, are
cut into records of ``chunk_points(key)`` points, and record ``i`` holding ``m`` points gets sequence
number ``i * (chunk + 1) + m``. A run that grew between two imports (still running at the first)
keeps its full records; only its last, partial record per key differs, and goes again under a new
number: at most that record's points are repeated, nothing is lost. The lifecycle events (tables
that keep the newest version) belong to the run's own producer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runstream._entries import check_params, check_summary, check_tags
from runstream._flatten import flatten, param_text
from runstream._points import check_points
from runstream._private import private_dir
from runstream._spool import SpoolWriter
from runstream._sync import SyncReport, sync
from runstream.settings import Settings
from runstream_core.errors import UsageError
from runstream_core.events import (
    MAX_EPOCH_MS,
    MAX_NAME_LEN,
    MAX_STEP,
    RUN_ID_PATTERN,
    Event,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    RunUpdate,
    encode_event,
)
from runstream_core.log import WarnOnce, get_logger
from runstream_core.team_names import team_name
from runstream_core.topics import TopicCode

log = get_logger("runstream.history")

IMPORTS_DIR = "imports"
"""Under ``runs_dir``: the spools of imports not yet delivered (``runstream sync`` sends them too)."""
_CHUNK_BYTES = 512 * 1024  # a record's points, well under max_record_bytes's default
_MAX_CHUNK = 4096
_POINT_OVERHEAD = 40  # bytes of a point besides its key: step, time and value as MessagePack, and framing
_ELLIPSIS = "…"


@dataclass
class HistoricRun:
    """One run as a source recorded it. Times are epoch milliseconds; ``ended_at_ms`` is None for a run the
    source still has running. ``metrics`` maps each key to its points ``(step, ts_ms, value)``; steps, times
    and values are checked here, so a reader hands over what it found."""

    source: str
    """The tracker's name (``mlflow``, ``tensorboard``, ``neptune``, ``wandb``)."""
    source_key: Sequence[str]
    """What names the run in its source (e.g. an MLflow run id), independent of where the files lie."""
    run_id: str
    project: str
    started_at_ms: int
    ended_at_ms: int | None = None
    status: RunStatus = RunStatus.FINISHED
    name: str = ""
    group: str = ""
    user: str = ""
    host: str = ""
    git_commit: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)


@dataclass
class ImportReport:
    """What an import brought and what it left out, by reason."""

    runs: int = 0
    points: int = 0
    params: int = 0
    tags: int = 0
    summary: int = 0
    records: int = 0
    sent_records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """What was left out, by reason (``"points: step out of range"``, ``"files"``...)."""
    undelivered: list[str] = field(default_factory=list)
    """Spools Kafka did not acknowledge: ``runstream sync`` sends them."""
    unreadable: list[str] = field(default_factory=list)
    """Inputs (files, runs) that could not be read, or only in part, each with the reason."""

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] += n


def digest(*parts: str) -> str:
    """32 hex digits naming ``parts`` (a producer id, a run id): the same parts always give the same name."""
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()


def import_run_id(source: str, source_id: str, *scope: str) -> str:
    """``source_id`` when it is a run id as it stands, else one derived from it (and ``scope``)."""
    if re.fullmatch(RUN_ID_PATTERN, source_id):
        return source_id
    return f"{source}-{digest(source, source_id, *scope)[:24]}"


def fit_name(text: str, report: ImportReport, what: str) -> str:
    """``text`` as a name the schema takes: control characters become spaces, and past ``MAX_NAME_LEN`` it is
    cut, keeping its end (a path's most specific part). Counted as a name shortened or cleaned."""
    cleaned = "".join(" " if _is_control(c) else c for c in text)
    if len(cleaned) > MAX_NAME_LEN:
        cleaned = _ELLIPSIS + cleaned[-(MAX_NAME_LEN - 1) :]
    if cleaned != text:
        report.skip(f"{what}s shortened or cleaned (kept, changed)")
    return cleaned


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def chunk_points(key: str) -> int:
    """Points per record of ``key``: fixed by the key alone, so the records of a run come out the same each time."""
    return max(1, min(_MAX_CHUNK, _CHUNK_BYTES // (len(key.encode()) + _POINT_OVERHEAD)))


def clamp_ms(ms: int) -> int:
    return min(max(ms, 0), MAX_EPOCH_MS)


class HistoryWriter:
    """Writes imported runs to spools under ``<runs_dir>/imports`` and sends them in groups."""

    def __init__(
        self,
        settings: Settings,
        team: str,
        *,
        progress: Callable[[int], None] | None = None,
        group_runs: int = 32,
        report: ImportReport | None = None,
    ) -> None:
        self._settings = settings
        self._team = team_name(team)
        self._progress = progress
        self._group_runs = group_runs
        self._warn = WarnOnce(log)
        self._root = settings.runs_dir / IMPORTS_DIR
        self._waiting: list[Path] = []
        self.report = report if report is not None else ImportReport()
        if self._team != team:
            log.warning("team name normalised: runs are stored under the normalised name", given=team, team=self._team)

    def add(self, run: HistoricRun) -> None:
        """Check ``run``, write its records to a spool; every ``group_runs`` runs, send them."""
        spool = self._write(run)
        if spool is not None:
            self._waiting.append(spool)
        if len(self._waiting) >= self._group_runs:
            self.send()

    def send(self) -> SyncReport | None:
        """Send the spools written so far and remove those Kafka acknowledged. Raises ``CommError`` when
        Kafka cannot be reached (the spools stay for ``runstream sync``)."""
        if not self._waiting:
            return None
        waiting, self._waiting = self._waiting, []
        result = sync(waiting, self._settings, force=True, progress=self._progress)
        failed = set(result.failed)
        self.report.sent_records += result.sent_records
        self.report.skip("records too large for Kafka", result.oversized_records)
        for spool in waiting:
            if str(spool) in failed:
                self.report.undelivered.append(str(spool))
            else:
                shutil.rmtree(spool, ignore_errors=True)
        return result

    # -- one run -------------------------------------------------------------------------
    def _write(self, run: HistoricRun) -> Path | None:
        report = self.report
        events = self.events(run)
        if events is None:
            return None
        private_dir(self._settings.runs_dir)
        private_dir(self._root)
        spool = self._root / digest(run.source, *run.source_key, self._team, run.project)
        if spool.exists():  # left by an import Kafka did not take: its records are these very ones
            shutil.rmtree(spool)
        writer = SpoolWriter(spool, self._settings.spool_segment_bytes)
        try:
            for frame, (topic, event) in enumerate(events):
                writer.append(frame, topic, encode_event(event))
                report.records += 1
        finally:
            writer.close()
        report.runs += 1
        return spool

    def events(self, run: HistoricRun) -> list[tuple[TopicCode, Event]] | None:
        """The records of ``run`` in the order they are sent, each entry checked (refusals counted); None when
        the run cannot be sent at all (its id)."""
        report = self.report
        project = fit_name(run.project.strip() or "default", report, "project name")
        try:
            run_id = _checked_run_id(run.run_id)
        except UsageError as exc:
            report.skip("runs: run id not usable")
            self._warn("run-id", str(exc))
            return None
        started = clamp_ms(run.started_at_ms)
        ended = None if run.ended_at_ms is None else max(clamp_ms(run.ended_at_ms), started)
        if ended is None and run.status is not RunStatus.RUNNING:  # ended, the source does not say when
            ended = max((ts for points in run.metrics.values() for _, ts, _ in points), default=started)
            ended = max(clamp_ms(ended), started)
        tags, refused_tags = check_tags(run.tags.items(), {}, self._warn)
        params, refused_params = check_params(run.params.items(), {}, self._warn)
        summary, refused_summary = check_summary(run.summary.items(), {}, self._warn)
        report.skip("tags refused (bounds)", refused_tags)
        report.skip("params refused (bounds)", refused_params)
        report.skip("summary values refused (bounds)", refused_summary)
        report.tags += len(tags)
        report.params += len(params)
        report.summary += len(summary)
        info = RunInfo(
            run_id=run_id,
            team=self._team,
            project=project,
            user=fit_name(run.user, report, "user name"),
            name=fit_name(run.name, report, "run name"),
            group=fit_name(run.group, report, "group name"),
            host=fit_name(run.host, report, "host name"),
            git_commit=fit_name(run.git_commit, report, "git commit"),
            tags=tags,
            started_at_ms=started,
        )
        owner = digest(run.source, *run.source_key, self._team, project, "run")
        events: list[tuple[TopicCode, Event]] = [
            (TopicCode.RUNS, RunStart(producer_id=owner, seq=0, run=info, params=params))
        ]
        last_step = -1
        for key in sorted(run.metrics):
            batches, top = self._batches(run, info, key, run.metrics[key])
            events.extend((TopicCode.METRICS, batch) for batch in batches)
            last_step = max(last_step, top)
        if summary:
            events.append(
                (
                    TopicCode.RUNS,
                    RunUpdate(producer_id=owner, seq=1, run=info, ts_ms=ended or started, summary=summary),
                )
            )
        if ended is not None:
            status = run.status if run.status is not RunStatus.RUNNING else RunStatus.FINISHED
            events.append(
                (
                    TopicCode.RUNS,
                    RunEnd(producer_id=owner, seq=2, run=info, status=status, ended_at_ms=ended, step=last_step),
                )
            )
        return events

    def _batches(
        self, run: HistoricRun, info: RunInfo, key: str, points: Iterable[tuple[int, int, float]]
    ) -> tuple[list[MetricBatch], int]:
        """The records of one metric key, and its highest step (-1 without points)."""
        report = self.report
        kept_keys, _ = check_points([key], [0.0], self._warn)
        good: list[tuple[int, int, float]] = []
        for step, ts_ms, value in points:
            if not kept_keys:
                report.skip("points: metric name refused (bounds)")
            elif not isinstance(step, int) or not 0 <= step <= MAX_STEP:
                report.skip("points: step out of range (0 to 2**63-1)")
            elif not isinstance(ts_ms, int) or not 0 <= ts_ms <= MAX_EPOCH_MS:
                report.skip("points: time out of range (1970 to 2299)")
            else:
                number = _number(value)
                if number is None:
                    report.skip("points: value not a number")
                else:
                    good.append((step, ts_ms, number))
        good.sort(key=lambda point: (point[0], point[1]))
        report.points += len(good)
        producer = digest(run.source, *run.source_key, self._team, info.project, "metric", key)
        size = chunk_points(key)
        batches = []
        for i in range(0, len(good), size):
            chunk = good[i : i + size]
            batches.append(
                MetricBatch(
                    producer_id=producer,
                    seq=(i // size) * (size + 1) + len(chunk),
                    run_id=info.run_id,
                    team=info.team,
                    project=info.project,
                    keys=[key] * len(chunk),
                    steps=[p[0] for p in chunk],
                    ts_ms=[p[1] for p in chunk],
                    values=[p[2] for p in chunk],
                )
            )
        return batches, good[-1][0] if good else -1


def _number(value: Any) -> float | None:
    """A point's value as a float (NaN and +/-inf kept, as a live run keeps them); None for anything else."""
    if isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if isinstance(number, float) else None


def _checked_run_id(run_id: str) -> str:
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise UsageError(f"run id {run_id[:64]!r} is not a run id")
    return run_id


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as ``a.b`` params, values as text (as ``log_params`` stores them)."""
    return {f"{prefix}{key}": param_text(value) for key, value in flatten(config, ".")}
